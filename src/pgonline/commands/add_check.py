"""``online add-check``: validate the expression, count violating rows, plan, run."""

from __future__ import annotations

from pgonline.catalog import preflight as preflight_data
from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.engine.change import ChangeOutcome, RunContext, change_table
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies.add_check import AddCheckArgs, AddCheckFacts, plan_add_check


async def add_check(ctx: RunContext, table: str, name: str, expression: str) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    args = AddCheckArgs(name=parse_identifier(name),
                        expression=sqltext.expression(expression, "CHECK expression"))

    async def make_plan(conn: Conn, facts: TableFacts) -> Plan:
        # The server plans it as a boolean over this table's columns.
        await preflight_data.vet_boolean(conn, facts, args.expression, "bad CHECK expression")
        violations = await preflight_data.check_violations(conn, facts, args.expression)
        return plan_add_check(AddCheckFacts(table=facts, violations=violations), args)

    return await change_table(ctx, qname, kind_of(plan_add_check), args, make_plan)
