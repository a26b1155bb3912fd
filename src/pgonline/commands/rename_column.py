"""``online rename-column``: gather column facts, plan with rename-column, run."""

from __future__ import annotations

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies.rename_column import RenameColumnArgs, RenameColumnFacts, plan_rename_column


async def rename_column(ctx: RunContext, table: str, old: str, new: str) -> ChangeOutcome:
    name = QualifiedName.parse(table)
    args = RenameColumnArgs(column=parse_identifier(old), new_name=parse_identifier(new))

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        details = await column_catalog.column_details(conn, facts, args.column)
        return plan_rename_column(
            RenameColumnFacts(server=await catalog.server_facts(conn), table=facts,
                              column=details),
            args,
        )

    return await change_table(ctx, name, kind_of(plan_rename_column), args, make_plan)
