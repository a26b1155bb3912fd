"""``online backfill``: parse ``--set`` with PostgreSQL's parser, validate, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream

from pgonline import catalog, column_catalog, sqltext
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.errors import UsageError
from pgonline.identifiers import MAX_IDENTIFIER_BYTES, QualifiedName
from pgonline.plan import Plan
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.backfill_set import BackfillArgs, BackfillFacts, plan_backfill


def parse_assignments(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``col = expr[, col2 = expr2]`` → (columns, expressions).

    The text is parsed as the SET list of an ``UPDATE`` by PostgreSQL's own
    parser: anything beyond plain assignments (a WHERE, a second statement,
    ``col[1] =``, ``(a, b) = ...``) is refused.  Column names come out folded
    exactly as the server would fold them; each value is re-rendered from its
    parse tree and must be one expression without a subquery.
    """
    if not text.strip():
        raise UsageError("--set must not be empty")
    try:
        stmts = parse_sql(f"UPDATE pgonline_target SET\n{text}\n")
    except ParseError as exc:
        raise UsageError(f"--set {text!r} is not valid SQL: {exc.args[0]}") from None
    stmt = stmts[0].stmt if len(stmts) == 1 else None
    if not isinstance(stmt, ast.UpdateStmt) or any(
            (stmt.whereClause, stmt.fromClause, stmt.returningClause, stmt.withClause)):
        raise UsageError(f"--set {text!r} must be `col = expr[, col = expr]` only",
                         hint="put the row filter in --where")
    columns: list[str] = []
    values: list[str] = []
    for target in stmt.targetList or ():
        if target.indirection or isinstance(target.val, ast.MultiAssignRef):
            raise UsageError(f"--set {text!r}: only plain `column = expression` assignments")
        name = str(target.name)
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            raise UsageError(f"identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
        if name in columns:
            raise UsageError(f"--set assigns {name!r} twice")
        rendered: str = RawStream()(target.val)
        columns.append(name)
        values.append(sqltext.expression(rendered, f"--set value for {name!r}"))
    return tuple(columns), tuple(values)


async def backfill(ctx: RunContext, table: str, set_: str, *,
                   where: str | None = None) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    columns, values = parse_assignments(set_)
    pred = None if where is None else sqltext.expression(where, "--where")
    args = BackfillArgs(columns=columns, values=values, where=pred)
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, qname)
        target = QualifiedName(schema, rel).quoted()

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            require_columns(facts, columns)
            await column_catalog.refuse_generated_targets(conn, facts, columns, "backfill")
            for col, value in zip(columns, values, strict=True):
                facts_col = facts.column(col)
                assert facts_col is not None
                # The server plans (never runs) the value cast to the column's type.
                await catalog.check_row_expression(conn, facts, value, facts_col.type)
            if pred is not None:
                await catalog.check_predicate(conn, facts, pred)
            return plan_backfill(BackfillFacts(table=facts), args)

        return await plan_and_run(ctx, conn, "backfill", target, asdict(args), make_plan)
