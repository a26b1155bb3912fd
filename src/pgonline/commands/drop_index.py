"""``online drop-index``: resolve the index and what depends on it, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline.catalog import indexes as index_catalog
from pgonline.connection import Conn, connection
from pgonline.engine import journal
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run, server_now
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql.identifiers import QualifiedName
from pgonline.strategies.drop_index import DropIndexArgs, plan_drop_index

KIND = kind_of(plan_drop_index)


async def drop_index(ctx: RunContext, index: str) -> ChangeOutcome:
    name = QualifiedName.parse(index)
    # The index name as given (not resolved) is the command's argument: an
    # interrupted run whose index is already gone must still find its job.
    args = DropIndexArgs(index=name.quoted())
    async with connection(ctx.dsn) as conn:

        async def make_plan() -> Plan:
            return plan_drop_index(await index_catalog.index_by_name(conn, name), args)

        started = await server_now(conn)
        target = await _job_target(conn, name, args)
        return await plan_and_run(ctx, conn, KIND, target, asdict(args), make_plan,
                                  started=started)


async def _job_target(conn: Conn, name: QualifiedName, args: DropIndexArgs) -> str:
    """The target this command's job is journaled under: the index's table.

    The plan's target is the table (its lock is what the step waits for and
    what one-job-per-table keys on), so the command must look its job up by
    the table too.  Once the index is gone the catalog no longer knows the
    table; the newest job of this very command does -- a run that crashed
    after the drop, or an identical command that ran at the same moment.
    """
    table = await index_catalog.table_of_index(conn, name)
    if table is not None:
        return table
    if await journal.schema_version(conn) is not None:
        last = await journal.latest_of_command(conn, KIND, asdict(args))
        if last is not None:
            return last.target
    return args.index
