"""Telling a refusal of the user's own SQL from a real failure, by SQLSTATE class only."""

from __future__ import annotations

import psycopg

# 42: syntax error or access rule violation (unknown column, bad operator...);
# 22: data exception (bad cast of a literal...).  Both mean "your expression",
# so the CLI reports them as a usage error (exit 2), not as a server failure.
USER_SQL_CLASSES = ("42", "22")
# 0A: feature not supported (e.g. a type or index method the server lacks).
UNSUPPORTED_CLASS = "0A"


def user_sql_error(exc: psycopg.Error, *, unsupported: bool = False) -> bool:
    """True if the server refused the user's SQL itself (and, if asked, an unsupported feature)."""
    classes = (*USER_SQL_CLASSES, UNSUPPORTED_CLASS) if unsupported else USER_SQL_CLASSES
    return exc.sqlstate is not None and exc.sqlstate[:2] in classes
