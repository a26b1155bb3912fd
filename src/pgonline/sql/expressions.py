"""User-supplied SQL fragments (types, expressions, ``col = expr`` lists) with pglast.

``--default``, ``--backfill``, ``--set``, ``--where``, ``--using``, CHECK
expressions and index expressions/predicates are SQL by nature, so they cannot
go through ``sql.Identifier``.  Each is parsed *standalone* by PostgreSQL's own
parser (pglast) and accepted only if the statement is exactly one expression
and nothing else.  What we hand back, and what ends up in plans and on the
server, is **rendered from the parse tree**, never the user's text:

* No wrapper parentheses around the text: ``true) or (true`` used to parse as
  ``SELECT ((true) or (true))`` and was then embedded as ``AND (true) or
  (true)``, escaping its slot.  Parsed as ``SELECT true) or (true`` it is a
  syntax error.
* Everything but the one expression is refused (FROM, WHERE, GROUP BY, ...,
  an alias, a second target, a second statement).
* Comments and any text the parse tree does not carry are gone from the
  rendering, so ``1 --`` cannot comment out the SQL we append after it.
* As a last guard the rendering is parsed again exactly as callers embed it,
  in parentheses, and must give the same tree: the SQL we run means what was
  validated.
"""

from __future__ import annotations

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pgonline.errors import UsageError
from pgonline.sql.identifiers import MAX_IDENTIFIER_BYTES


def _parse(sql_text: str, what: str, text: str) -> tuple[ast.RawStmt, ...]:
    if "\x00" in text:
        # NUL marks query parameters in params.with_params; SQL never contains it.
        raise UsageError(f"{what} {text!r} must not contain a NUL character")
    try:
        stmts: tuple[ast.RawStmt, ...] = tuple(parse_sql(sql_text))
    except ParseError as exc:
        raise UsageError(f"{what} {text!r} is not valid SQL: {exc.args[0]}") from None
    return stmts


def _lone_value(stmts: tuple[ast.RawStmt, ...]) -> ast.Node | None:
    """The one target of ``SELECT <expr>`` when the statement holds nothing else."""
    if len(stmts) != 1 or not isinstance(stmts[0].stmt, ast.SelectStmt):
        return None
    stmt = stmts[0].stmt
    # Every other attribute (FROM, WHERE, GROUP BY, HAVING, WINDOW, ORDER BY,
    # LIMIT/OFFSET, DISTINCT, INTO, FOR UPDATE, WITH, set operations, VALUES)
    # is empty on a bare ``SELECT <expr>``; checking them all rather than a
    # list of known clauses also refuses any clause a future parser adds.
    if any(getattr(stmt, attr) for attr in stmt if attr != "targetList"):
        return None
    targets = stmt.targetList or ()
    if len(targets) != 1:
        return None
    target = targets[0]
    if not isinstance(target, ast.ResTarget) or target.name or target.indirection:
        return None  # `expr AS alias`
    val = target.val
    if not isinstance(val, ast.Node) or _is_star(val):
        return None
    return val


def _is_star(node: ast.Node) -> bool:
    """``*`` or ``t.*``: a target-list expansion, not an expression."""
    return isinstance(node, ast.ColumnRef) and any(
        isinstance(f, ast.A_Star) for f in node.fields or ())


def _refuse_parameters(val: ast.Node, what: str, text: str) -> None:
    # `$1` would bind to *our* parameters where the expression runs in a
    # parameterized query (the batch UPDATE's key bounds): never user input.
    if _contains(val, (ast.ParamRef,)):
        raise UsageError(f"{what} {text!r} must not contain a parameter placeholder ($n)")


def _contains(node: object, kinds: tuple[type, ...]) -> bool:
    if isinstance(node, kinds):
        return True
    if isinstance(node, ast.Node):
        return any(_contains(getattr(node, attr), kinds) for attr in node)
    if isinstance(node, tuple | list):
        return any(_contains(x, kinds) for x in node)
    return False


def _render(node: ast.Node, what: str, text: str) -> str:
    """``node`` as SQL, checked to mean the same tree once embedded as ``(<sql>)``."""
    try:
        rendered: str = RawStream()(node)
        again = _lone_value(tuple(parse_sql(f"SELECT ({rendered})")))
    except Exception:  # a printer or parser failure: not renderable
        again = None
    if again is None or again != node:
        raise UsageError(f"{what} {text!r} cannot be rendered back to the same SQL expression",
                         hint="write it differently (e.g. with explicit parentheses or casts)")
    return rendered


def _expression_node(text: str, what: str, *, allow_subquery: bool) -> ast.Node:
    if not text.strip():
        raise UsageError(f"{what} must not be empty")
    # No parentheses around the text: nothing in it can close one of ours.
    val = _lone_value(_parse(f"SELECT {text}", what, text))
    if val is None:
        raise UsageError(f"{what} {text!r} must be a single SQL expression")
    _vet_expression(val, what, text, allow_subquery=allow_subquery)
    return val


def _vet_expression(val: ast.Node, what: str, text: str, *, allow_subquery: bool) -> None:
    if not allow_subquery and _contains(val, (ast.SubLink,)):
        raise UsageError(f"{what} {text!r} must not contain a subquery")
    _refuse_parameters(val, what, text)


def expression(text: str, what: str = "expression", *, allow_subquery: bool = False) -> str:
    """The SQL of ``text`` rendered from its parse if it is exactly one expression, else raise.

    Callers embed the result as ``(<result>)``: the result is one complete
    expression without comments, so it cannot reach outside those parentheses.
    """
    val = _expression_node(text, what, allow_subquery=allow_subquery)
    return _render(val, what, text)


def expression_of(node: ast.Node, what: str = "expression", *,
                  allow_subquery: bool = False) -> str:
    """:func:`expression` for an expression already parsed (a migration statement's node).

    The same checks and the same rendering as for the text it renders to,
    so a statement rewritten by ``migrate up --online`` records exactly the
    arguments the equivalent command line does.
    """
    text = _printed(node)
    if _is_star(node):
        raise UsageError(f"{what} {text!r} must be a single SQL expression")
    _vet_expression(node, what, text, allow_subquery=allow_subquery)
    return _render(node, what, text)


def _printed(node: ast.Node) -> str:
    try:
        text: str = RawStream()(node)
    except Exception:  # a printer failure: quoted in the message as the node's type
        return f"<{type(node).__name__}>"
    return text


def assignments(text: str, what: str = "--set") -> tuple[tuple[str, str], ...]:
    """``col = expr[, col2 = expr2]`` -> ((column, rendered expression), ...).

    The text is parsed as the SET list of an ``UPDATE`` by PostgreSQL's own
    parser (the wrapper has no parentheses the text could close): anything
    beyond plain assignments (a WHERE, FROM, RETURNING, a second statement,
    ``col[1] =``, ``(a, b) = ...``) is refused.  Column names come out folded
    exactly as the server folds them (callers quote them with
    ``sql.Identifier``); each value is rendered from its parse tree like
    :func:`expression` and must be one expression without a subquery.
    """
    if not text.strip():
        raise UsageError(f"{what} must not be empty")
    # The newline ends a trailing `--` comment before the end of our wrapper;
    # the values are rendered from the tree anyway, so comments never reach SQL.
    stmts = _parse(f"UPDATE pgonline_target SET\n{text}\n", what, text)
    stmt = stmts[0].stmt if len(stmts) == 1 else None
    if not isinstance(stmt, ast.UpdateStmt) or any(
            getattr(stmt, attr) for attr in stmt if attr not in ("relation", "targetList")):
        raise UsageError(f"{what} {text!r} must be `col = expr[, col = expr]` only",
                         hint="put the row filter in --where")
    pairs: list[tuple[str, str]] = []
    for target in stmt.targetList or ():
        if target.indirection or isinstance(target.val, ast.MultiAssignRef):
            raise UsageError(f"{what} {text!r}: only plain `column = expression` assignments")
        name = str(target.name)
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise UsageError(f"identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
        if any(name == seen for seen, _ in pairs):
            raise UsageError(f"{what} assigns {name!r} twice")
        label = f"{what} value for {name!r}"
        val = target.val
        if isinstance(val, ast.SetToDefault):
            raise UsageError(f"{label}: DEFAULT is not supported, give the expression")
        if not isinstance(val, ast.Node) or _is_star(val):
            raise UsageError(f"{label} must be a single SQL expression")
        if _contains(val, (ast.SubLink,)):
            raise UsageError(f"{label} must not contain a subquery")
        _refuse_parameters(val, label, text)
        pairs.append((name, _render(val, label, text)))
    if not pairs:
        raise UsageError(f"{what} {text!r} must be `col = expr[, col = expr]` only")
    return tuple(pairs)


def type_name(text: str) -> str:
    """Return the canonical rendering of a type name such as ``varchar(255)[]``."""
    if not text.strip():
        raise UsageError("type must not be empty")
    # `NULL::<text>` must be the whole statement: `int); drop table x; --`
    # is a syntax error, `int FROM t` or `int, 1` is not a lone cast.
    val = _lone_value(_parse(f"SELECT NULL::{text}", "type", text))
    if val is None:
        raise UsageError(f"type {text!r} must be a single SQL expression")
    if (not isinstance(val, ast.TypeCast) or not isinstance(val.arg, ast.A_Const)
            or not val.arg.isnull or val.typeName is None):
        raise UsageError(f"type {text!r} is not a type name")
    return _type_rendering(val.typeName, text)


def type_name_of(node: ast.TypeName) -> str:
    """:func:`type_name` for a type already parsed (a migration statement's column type)."""
    return _type_rendering(node, _printed(node))


def _type_rendering(node: ast.TypeName, text: str) -> str:
    if node.setof:
        raise UsageError(f"type {text!r} is not a type name")
    rendered: str = RawStream()(node)
    again = _lone_value(_parse(f"SELECT NULL::{rendered}", "type", text))
    if not isinstance(again, ast.TypeCast) or again.typeName != node:
        raise UsageError(f"type {text!r} cannot be rendered back to the same type name")
    return rendered
