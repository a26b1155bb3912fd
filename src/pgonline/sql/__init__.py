"""SQL text: identifiers, user expressions parsed with pglast, parameters, derived names."""
