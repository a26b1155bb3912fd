"""A user-supplied load signal: ``--throttle-query SQL --throttle-max X``.

The query returns one number (queue depth, CPU from an extension, rows in a
"pause" table, anything); the backfill pauses while it is greater than X.

It runs as the backfill's role on the target database, so it is held to a
strict contract before it is ever sent:

* parsed with pglast, it must be exactly one plain ``SELECT`` (no
  ``SELECT INTO``, no ``FOR UPDATE``/``SHARE`` row locks, no data-modifying
  ``WITH``);
* it runs in a ``READ ONLY`` transaction under a short ``statement_timeout``,
  so even a function with side effects in it cannot write, and a slow query
  cannot stall the backfill for long.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.visitors import Visitor

from pgonline.connection import Conn, set_local
from pgonline.engine.retry import is_connection_lost
from pgonline.errors import PreflightError, UsageError

_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)


class _FindWrites(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.bad: str | None = None

    def visit(self, ancestors: Any, node: Any) -> None:
        if isinstance(node, _WRITES):
            self.bad = f"a data-modifying {type(node).__name__.removesuffix('Stmt').upper()}"
        elif isinstance(node, ast.LockingClause):
            self.bad = "a row-locking clause (FOR UPDATE/SHARE)"
        elif isinstance(node, ast.IntoClause):
            self.bad = "SELECT INTO"


def validate_select(text: str) -> str:
    """Return ``text`` stripped if it is exactly one read-only SELECT; else raise UsageError."""
    hint = "give one SELECT returning a single number, e.g. " \
           "\"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'\""
    try:
        stmts = parse_sql(text)
    except ParseError as exc:
        raise UsageError(f"--throttle-query is not valid SQL: {exc}", hint=hint) from None
    if len(stmts) != 1:
        raise UsageError(f"--throttle-query must be exactly one statement, got {len(stmts)}",
                         hint=hint)
    stmt = stmts[0].stmt
    if not isinstance(stmt, ast.SelectStmt):
        raise UsageError(f"--throttle-query must be a SELECT, not {type(stmt).__name__}", hint=hint)
    finder = _FindWrites()
    finder(stmts[0])
    if finder.bad:
        raise UsageError(f"--throttle-query must only read; it contains {finder.bad}", hint=hint)
    return text.strip().rstrip(";").strip()


class QueryThrottle:
    """Pause while the user's ``query`` returns a number greater than ``max_value``."""

    def __init__(self, query: str, max_value: float, *, timeout_ms: int = 5000) -> None:
        self.query = validate_select(query)
        self.max_value = max_value
        self.timeout_ms = timeout_ms

    def __repr__(self) -> str:
        return f"throttle query <= {self.max_value:g}"

    async def value(self, conn: Conn) -> float:
        try:
            async with conn.transaction():
                await conn.execute("SET TRANSACTION READ ONLY")
                await conn.execute(set_local("statement_timeout", self.timeout_ms))
                cur = await conn.execute(self.query)
                rows = await cur.fetchall()
        except psycopg.Error as exc:
            if is_connection_lost(exc):
                raise  # not the query's fault: the executor reconnects
            msg = exc.diag.message_primary or str(exc).strip()
            raise PreflightError(f"--throttle-query failed: {msg} [SQLSTATE {exc.sqlstate}]",
                                 hint="fix the query, then `online resume`",
                                 sqlstate=exc.sqlstate) from None
        if len(rows) != 1 or len(rows[0]) != 1:
            raise PreflightError("--throttle-query must return exactly one row with one column",
                                 hint=f"it returned {len(rows)} row(s)")
        try:
            return float(rows[0][0])
        except (TypeError, ValueError):
            raise PreflightError(f"--throttle-query returned {rows[0][0]!r}, not a number",
                                 hint="cast the result to a number") from None

    async def prepare(self, conn: Conn) -> None:
        await self.value(conn)

    async def reason(self, conn: Conn) -> str | None:
        v = await self.value(conn)
        if v > self.max_value:
            return f"throttle query: {v:g} > --throttle-max {self.max_value:g}"
        return None
