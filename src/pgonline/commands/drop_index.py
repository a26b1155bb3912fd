"""``online drop-index``: resolve the index and what depends on it, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline.catalog import indexes as index_catalog
from pgonline.commands.common import ChangeOutcome, RunContext, plan_and_run
from pgonline.connection import connection
from pgonline.engine.plan import Plan
from pgonline.sql.identifiers import QualifiedName
from pgonline.strategies.drop_index import DropIndexArgs, plan_drop_index


async def drop_index(ctx: RunContext, index: str) -> ChangeOutcome:
    name = QualifiedName.parse(index)
    # The target is the name as given (not resolved): an interrupted run whose
    # index is already gone must still find its unfinished job to finish it.
    args = DropIndexArgs(index=name.quoted())
    async with connection(ctx.dsn) as conn:

        async def make_plan() -> Plan:
            return plan_drop_index(await index_catalog.index_by_name(conn, name), args)

        return await plan_and_run(ctx, conn, "drop-index", args.index, asdict(args), make_plan)
