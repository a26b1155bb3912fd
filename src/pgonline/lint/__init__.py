"""``online lint``: static checks of SQL migration files for locking and rewrite hazards.

Rules work on pglast ASTs of each statement (never on regexes of the SQL), know
which tables the same file and transaction created (new tables are exempt from
locking rules; each file is judged alone), and use catalog facts (row counts, sizes, column types, function
volatility) when a DSN is given.
"""

from pgonline.lint.engine import discover, lint_parsed, lint_texts, parse_all, referenced, rule_catalog
from pgonline.lint.findings import Finding, Severity
from pgonline.lint.state import LintOptions

__all__ = [
    "Finding", "LintOptions", "Severity", "discover", "lint_parsed", "lint_texts", "parse_all",
    "referenced", "rule_catalog",
]
