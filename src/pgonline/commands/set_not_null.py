"""``online set-not-null``: count NULLs (pre-flight), plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline import catalog, preflight_data, sqltext
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.identifiers import QualifiedName, parse_identifier
from pgonline.plan import Plan
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.set_not_null import SetNotNullArgs, SetNotNullFacts, plan_set_not_null


async def set_not_null(ctx: RunContext, table: str, column: str, *,
                       backfill: str | None = None) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    args = SetNotNullArgs(
        column=parse_identifier(column),
        backfill=None if backfill is None else sqltext.expression(backfill, "backfill expression"),
    )
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, qname)
        target = QualifiedName(schema, rel).quoted()

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            require_columns(facts, (args.column,))
            col = facts.column(args.column)
            assert col is not None
            if args.backfill is not None:
                await catalog.check_row_expression(conn, facts, args.backfill, col.type)
            # Pre-flight, read-only: how many rows would VALIDATE reject?
            nulls = 0 if col.not_null else await preflight_data.count_nulls(conn, facts,
                                                                             args.column)
            return plan_set_not_null(
                SetNotNullFacts(server=await catalog.server_facts(conn), table=facts,
                                null_rows=nulls),
                args,
            )

        return await plan_and_run(ctx, conn, "set-not-null", target, asdict(args), make_plan)
