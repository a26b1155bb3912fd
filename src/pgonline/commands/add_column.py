"""``online add-column``: gather facts, plan with the add-column strategy, run."""

from __future__ import annotations

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies.add_column import AddColumnArgs, AddColumnFacts, plan_add_column


async def add_column(ctx: RunContext, table: str, column: str, type_: str, *,
                     default: str | None = None, not_null: bool = False,
                     backfill: str | None = None) -> ChangeOutcome:
    # Everything the user typed is validated before we connect: names become
    # identifiers, the type and expressions must parse as exactly one item.
    name = QualifiedName.parse(table)
    args = AddColumnArgs(
        column=parse_identifier(column),
        type_sql=sqltext.type_name(type_),
        default=None if default is None else sqltext.expression(default, "default"),
        not_null=not_null,
        backfill=None if backfill is None else sqltext.expression(backfill, "backfill expression"),
    )

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        probed = await catalog.probe_default(conn, args.type_sql, args.default)
        if args.backfill is not None:
            # The fill trigger computes it one row at a time: refuse aggregates,
            # window and set-returning functions before anything changes.
            await column_catalog.check_per_row_expression(conn, facts, args.backfill,
                                                          args.column, args.type_sql)
        return plan_add_column(
            AddColumnFacts(
                server=await catalog.server_facts(conn), table=facts, default=probed,
                has_rows=await catalog.has_rows(conn, facts),
            ),
            args,
        )

    return await change_table(ctx, name, kind_of(plan_add_column), args, make_plan)
