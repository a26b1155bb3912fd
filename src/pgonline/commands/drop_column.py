"""``online drop-column``: list what depends on the column, refuse without --confirm, drop."""

from __future__ import annotations

from dataclasses import replace

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
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
        drop_facts = DropColumnFacts(server=await catalog.server_facts(conn), table=facts,
                                     column=details)
        if ctx.dry_run and not args.confirm:
            # A dry run changes nothing, so it shows the plan --confirm would run
            # (and says so) instead of refusing like the real run does.
            plan = plan_drop_column(drop_facts, replace(args, confirm=True))
            return replace(plan, notes=("without --confirm this command refuses: it discards "
                                        "the column's data for good", *plan.notes))
        return plan_drop_column(drop_facts, args)

    return await change_table(ctx, name, kind_of(plan_drop_column), args, make_plan)
