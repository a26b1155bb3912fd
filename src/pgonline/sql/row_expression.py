"""A user expression over one table row, rewritten to read the trigger's ``NEW`` row.

``--backfill EXPR`` names the table's columns as an ``UPDATE ... SET c = EXPR``
would.  The fill trigger must compute the same value for rows the application
writes, so the expression is parsed with pglast (PostgreSQL's own parser) and
every column reference is rewritten on the parse tree to ``NEW.<column>``;
the result is rendered back from the tree, never pasted together from user
text.  Rewriting every reference also keeps PL/pgSQL from mistaking a column
for one of its own variables (``found``, ``tg_op``...).

What cannot be evaluated from one row alone is refused here: a subquery (it
reads other rows, or the table itself) and ``table.*``.  Aggregates, window
and set-returning functions are refused by the server's own rules in
:func:`pgonline.catalog.columns.check_per_row_expression`.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pgonline.errors import UsageError

ROW = "new"  # PL/pgSQL's record of the row being written (case-insensitive)


def _parse(text: str) -> ast.Node:
    try:
        stmts = parse_sql(f"SELECT (\n{text}\n)")
    except ParseError as exc:
        raise UsageError(f"backfill expression {text!r} is not valid SQL: {exc.args[0]}") from None
    stmt = stmts[0].stmt
    assert isinstance(stmt, ast.SelectStmt) and stmt.targetList
    val = stmt.targetList[0].val
    assert isinstance(val, ast.Node)
    return val


def _refuse(text: str, why: str) -> UsageError:
    return UsageError(
        f"backfill expression {text!r} cannot be evaluated per row: {why}",
        hint="rows the application writes during the change are filled by a trigger that "
        "sees one row at a time; use an expression over that row's columns only",
    )


def _walk(node: object, text: str, schema: str, table: str) -> None:
    if isinstance(node, ast.SubLink):
        raise _refuse(text, "it contains a subquery, which reads other rows")
    if isinstance(node, ast.ColumnRef):
        node.fields = _over_new(tuple(node.fields or ()), text, schema, table)
        return
    if isinstance(node, ast.Node):
        for attr in node:
            _walk(getattr(node, attr), text, schema, table)
    elif isinstance(node, tuple | list):
        for item in node:
            _walk(item, text, schema, table)


def _over_new(fields: tuple[object, ...], text: str, schema: str,
              table: str) -> tuple[ast.Node, ...]:
    if not fields or not all(isinstance(f, ast.String) for f in fields):
        raise _refuse(text, "it refers to a whole row with '*'")
    names = [f.sval for f in fields if isinstance(f, ast.String)]
    # In UPDATE t SET c = EXPR, "t.col" and "schema.t.col" name t's column;
    # PostgreSQL tries the table reading first, and so do we.
    if len(names) >= 3 and names[0] == schema and names[1] == table:
        names = names[2:]
    elif len(names) >= 2 and names[0] == table:
        names = names[1:]
    elif len(names) == 1 and names[0] == table:
        names = []  # the whole row, as in f(t): NEW is that row
    return tuple(ast.String(sval=n) for n in (ROW, *names))


def referenced_columns(text: str, *, schema: str, table: str) -> frozenset[str]:
    """The columns ``text`` reads; ``"*"`` stands for a whole-row reference (every column)."""
    expr = _parse(text)
    _walk(expr, text, schema, table)
    found: set[str] = set()

    def collect(node: object) -> None:
        if isinstance(node, ast.ColumnRef):
            names = [str(f.sval) for f in node.fields or () if isinstance(f, ast.String)]
            found.add(names[1] if len(names) > 1 else "*")
        elif isinstance(node, ast.Node):
            for attr in node:
                collect(getattr(node, attr))
        elif isinstance(node, tuple | list):
            for item in node:
                collect(item)

    collect(expr)
    return frozenset(found)


def over_new_row(text: str, *, schema: str, table: str) -> str:
    """``text`` with every column reference rewritten to ``NEW.<column>``, rendered.

    >>> over_new_row("md5(email) || users.id", schema="public", table="users")
    '(md5(new.email) || new.id)'
    """
    expr = _parse(text)
    _walk(expr, text, schema, table)
    rendered: str = RawStream()(expr)
    return f"({rendered})"
