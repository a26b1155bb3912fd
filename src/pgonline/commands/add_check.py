"""``online add-check``: validate the expression, count violating rows, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline import catalog, preflight_data, sqltext
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.identifiers import QualifiedName, parse_identifier
from pgonline.plan import Plan
from pgonline.strategies.add_check import AddCheckArgs, AddCheckFacts, plan_add_check


async def add_check(ctx: RunContext, table: str, name: str, expression: str) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    args = AddCheckArgs(name=parse_identifier(name),
                        expression=sqltext.expression(expression, "CHECK expression"))
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, qname)
        target = QualifiedName(schema, rel).quoted()

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            # The server plans it as a boolean over this table's columns.
            await preflight_data.vet_boolean(conn, facts, args.expression, "bad CHECK expression")
            violations = await preflight_data.check_violations(conn, facts, args.expression)
            return plan_add_check(AddCheckFacts(table=facts, violations=violations), args)

        return await plan_and_run(ctx, conn, "add-check", target, asdict(args), make_plan)
