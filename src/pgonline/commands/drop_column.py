"""``online drop-column``: list what depends on the column, refuse without --confirm, drop."""

from __future__ import annotations

from dataclasses import asdict

from pgonline import catalog, column_catalog
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.identifiers import QualifiedName, parse_identifier
from pgonline.plan import Plan
from pgonline.strategies.drop_column import DropColumnArgs, DropColumnFacts, plan_drop_column


async def drop_column(ctx: RunContext, table: str, column: str, *,
                      confirm: bool = False) -> ChangeOutcome:
    name = QualifiedName.parse(table)
    args = DropColumnArgs(column=parse_identifier(column), confirm=confirm)
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, name)
        target = QualifiedName(schema, rel).quoted()

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            details = await column_catalog.column_details(conn, facts, args.column)
            return plan_drop_column(
                DropColumnFacts(server=await catalog.server_facts(conn), table=facts,
                                column=details),
                args,
            )

        return await plan_and_run(ctx, conn, "drop-column", target, asdict(args), make_plan)
