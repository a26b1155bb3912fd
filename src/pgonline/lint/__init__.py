"""``online lint``: static checks of SQL migration files for locking and rewrite hazards.

Rules work on pglast ASTs of each statement (never on regexes of the SQL), know
which tables the same file and transaction created (new tables are exempt from
locking rules; each file is judged alone), and use catalog facts (row counts, sizes, column types, function
volatility) when a DSN is given.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pgonline.lint.engine import (
        discover,
        lint_parsed,
        lint_texts,
        parse_all,
        referenced,
        rule_catalog,
    )
    from pgonline.lint.findings import Finding, Severity
    from pgonline.lint.state import LintOptions

# Imported on first use: `online lint --help` (and every module of this
# package, which imports the package first) then costs no parser import.
_HOME = {"discover": "engine", "lint_parsed": "engine", "lint_texts": "engine",
         "parse_all": "engine", "referenced": "engine", "rule_catalog": "engine",
         "Finding": "findings", "Severity": "findings", "LintOptions": "state"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)


__all__ = [
    "Finding", "LintOptions", "Severity", "discover", "lint_parsed", "lint_texts", "parse_all",
    "referenced", "rule_catalog",
]
