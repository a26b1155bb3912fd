"""``online set-not-null``: count NULLs (pre-flight), plan, run."""

from __future__ import annotations

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import preflight as preflight_data
from pgonline.catalog import tables as catalog
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.set_not_null import SetNotNullArgs, SetNotNullFacts, plan_set_not_null


async def set_not_null(ctx: RunContext, table: str, column: str, *,
                       backfill: str | None = None) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    args = SetNotNullArgs(
        column=parse_identifier(column),
        backfill=None if backfill is None else sqltext.expression(backfill, "backfill expression"),
    )

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        require_columns(facts, (args.column,))
        col = facts.column(args.column)
        assert col is not None
        if args.backfill is not None:
            # The fill trigger computes it one row at a time: refuse aggregates,
            # window and set-returning functions before anything changes.
            await column_catalog.check_per_row_expression(conn, facts, args.backfill,
                                                          args.column)
        # Pre-flight, read-only: how many rows would VALIDATE reject?
        nulls = 0 if col.not_null else await preflight_data.count_nulls(conn, facts,
                                                                         args.column)
        return plan_set_not_null(
            SetNotNullFacts(server=await catalog.server_facts(conn), table=facts,
                            null_rows=nulls),
            args,
        )

    return await change_table(ctx, qname, kind_of(plan_set_not_null), args, make_plan)
