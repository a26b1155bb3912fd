"""``online rename-column``: gather column facts, plan with rename-column, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline import catalog, column_catalog
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.identifiers import QualifiedName, parse_identifier
from pgonline.plan import Plan
from pgonline.strategies.rename_column import RenameColumnArgs, RenameColumnFacts, plan_rename_column


async def rename_column(ctx: RunContext, table: str, old: str, new: str) -> ChangeOutcome:
    name = QualifiedName.parse(table)
    args = RenameColumnArgs(column=parse_identifier(old), new_name=parse_identifier(new))
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, name)
        target = QualifiedName(schema, rel).quoted()

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            details = await column_catalog.column_details(conn, facts, args.column)
            return plan_rename_column(
                RenameColumnFacts(server=await catalog.server_facts(conn), table=facts,
                                  column=details),
                args,
            )

        return await plan_and_run(ctx, conn, "rename-column", target, asdict(args), make_plan)
