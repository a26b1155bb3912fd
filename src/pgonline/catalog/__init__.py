"""Read-only catalog introspection: facts dataclasses, table/column/index look-ups, pre-flight data checks."""
