"""``online drop-column``: list what depends on the column, refuse without --confirm, drop."""

from __future__ import annotations

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.commands.common import ChangeOutcome, RunContext, change_table
from pgonline.connection import Conn
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies.drop_column import DropColumnArgs, DropColumnFacts, plan_drop_column


async def drop_column(ctx: RunContext, table: str, column: str, *,
                      confirm: bool = False) -> ChangeOutcome:
    name = QualifiedName.parse(table)
    args = DropColumnArgs(column=parse_identifier(column), confirm=confirm)

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        details = await column_catalog.column_details(conn, facts, args.column)
        return plan_drop_column(
            DropColumnFacts(server=await catalog.server_facts(conn), table=facts,
                            column=details),
            args,
        )

    return await change_table(ctx, name, kind_of(plan_drop_column), args, make_plan)
