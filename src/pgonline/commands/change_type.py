"""``online change-type``: gather column and type facts, plan with change-type, run."""

from __future__ import annotations

from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render
from pgonline.strategies.change_type import (
    ChangeTypeArgs,
    ChangeTypeFacts,
    plan_change_type,
    refuse_generated,
)


async def change_type(ctx: RunContext, table: str, column: str, type_: str, *,
                      using: str | None = None) -> ChangeOutcome:
    # Names, the type and the USING expression are validated before connecting.
    name = QualifiedName.parse(table)
    args = ChangeTypeArgs(
        column=parse_identifier(column),
        type_sql=sqltext.type_name(type_),
        using=None if using is None else sqltext.expression(using, "USING expression"),
    )

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        details = await column_catalog.column_details(conn, facts, args.column)
        # Before the probes: they would trip over a generation expression.
        refuse_generated(facts, details)
        new_type = await column_catalog.new_type_facts(conn, details, args.type_sql)
        source = args.using if args.using is not None else render(sql.Identifier(args.column))
        await column_catalog.check_conversion(
            conn, facts, args.column, source, new_type.display,
            f"cannot convert {details.column.type} to {new_type.display}"
            if args.using is None else "bad USING expression")
        await column_catalog.check_default_fits(conn, details, new_type.display)
        return plan_change_type(
            ChangeTypeFacts(server=await catalog.server_facts(conn), table=facts,
                            column=details, new_type=new_type),
            args,
        )

    return await change_table(ctx, name, kind_of(plan_change_type), args, make_plan)
