"""``online backfill``: parse ``--set`` with PostgreSQL's parser, validate, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.connection import connection
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.backfill_set import BackfillArgs, BackfillFacts, plan_backfill


def parse_assignments(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``col = expr[, col2 = expr2]`` -> (columns, expressions rendered from their parse)."""
    pairs = sqltext.assignments(text, "--set")
    return tuple(c for c, _ in pairs), tuple(v for _, v in pairs)


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

        return await plan_and_run(ctx, conn, kind_of(plan_backfill), target, asdict(args), make_plan)
