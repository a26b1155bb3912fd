"""Validation of user-supplied SQL fragments (types and expressions) with pglast.

``--default``, ``--backfill`` and ``--where`` are SQL by nature, so they cannot
go through ``sql.Identifier``.  Instead each is parsed by PostgreSQL's own
parser (pglast) inside a fixed wrapper and accepted only if it is *exactly one*
expression: ``1); DROP TABLE users; --`` parses as several statements or an
unbalanced wrapper and is refused before any connection sees it.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pgonline.errors import UsageError


def _parse_single_select(wrapped: str, what: str, text: str) -> ast.SelectStmt:
    try:
        stmts = parse_sql(wrapped)
    except ParseError as exc:
        raise UsageError(f"{what} {text!r} is not valid SQL: {exc.args[0]}") from None
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        raise UsageError(f"{what} {text!r} must be a single SQL expression")
    stmt = stmts[0].stmt
    targets = stmt.targetList or ()
    extra = (stmt.fromClause, stmt.whereClause, stmt.groupClause, stmt.havingClause,
             stmt.sortClause, stmt.limitCount, stmt.withClause,
             stmt.op is not None and stmt.op.value)
    if len(targets) != 1 or any(extra):
        raise UsageError(f"{what} {text!r} must be a single SQL expression")
    return stmt


def _contains(node: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(node, kinds):
        return True
    if isinstance(node, ast.Node):
        return any(_contains(getattr(node, attr), kinds) for attr in node)
    if isinstance(node, tuple | list):
        return any(_contains(x, kinds) for x in node)
    return False


def expression(text: str, what: str = "expression", *, allow_subquery: bool = False) -> str:
    """Return ``text`` (stripped) if it is exactly one SQL expression, else raise.

    The text is later embedded as ``(<text>)``; newlines around it in the
    wrapper make a trailing ``--`` comment harmless.
    """
    stripped = text.strip()
    if not stripped:
        raise UsageError(f"{what} must not be empty")
    stmt = _parse_single_select(f"SELECT (\n{stripped}\n)", what, text)
    if not allow_subquery and _contains(stmt.targetList, (ast.SubLink,)):
        raise UsageError(f"{what} {text!r} must not contain a subquery")
    return stripped


def type_name(text: str) -> str:
    """Return the canonical rendering of a type name such as ``varchar(255)[]``."""
    stripped = text.strip()
    if not stripped:
        raise UsageError("type must not be empty")
    stmt = _parse_single_select(f"SELECT NULL::{stripped}", "type", text)
    val = (stmt.targetList or ())[0].val
    if (not isinstance(val, ast.TypeCast) or not isinstance(val.arg, ast.A_Const)
            or val.typeName is None):
        raise UsageError(f"type {text!r} is not a type name")
    rendered: str = RawStream()(val.typeName)
    return rendered
