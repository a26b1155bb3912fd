"""What every change command shares: resume-or-plan, then dry-run or execute."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from pgonline import catalog, journal
from pgonline.connection import connection
from pgonline.errors import JobError
from pgonline.executor import ExecOptions, Executor, JobResult
from pgonline.facts import TableFacts
from pgonline.identifiers import QualifiedName
from pgonline.plan import Plan, fingerprint
from pgonline.progress import Progress
from pgonline.throttle import Throttles, current

Conn = psycopg.AsyncConnection[Any]


@dataclass
class RunContext:
    """Everything a change command needs besides its own arguments."""

    dsn: str
    options: ExecOptions = field(default_factory=ExecOptions)
    progress: Progress = field(default_factory=Progress)
    # The watchers/throttles the CLI built from this command's options (cli_control).
    throttles: Throttles = field(default_factory=current)
    dry_run: bool = False
    out: Callable[[str], None] = print


@dataclass(frozen=True)
class ChangeOutcome:
    plan: Plan
    result: JobResult | None  # None for a dry run


async def unfinished_twin(conn: Conn, kind: str, target: str,
                          args: dict[str, Any]) -> journal.Job | None:
    """An unfinished job of the very same command, if the journal has one."""
    cur = await conn.execute("SELECT to_regclass('pgonline.jobs') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    return await journal.find_unfinished(conn, fingerprint(kind, target, args))


async def plan_and_run(ctx: RunContext, conn: Conn, kind: str, target: str, args: dict[str, Any],
                       make_plan: Callable[[], Awaitable[Plan]]) -> ChangeOutcome:
    """Resume the same command's unfinished job, or plan anew; then print or execute.

    ``make_plan`` gathers catalog facts and calls the strategy; it is only
    called when there is no unfinished twin, because a half-applied change
    would make the catalog disagree with the original plan.
    """
    twin = await unfinished_twin(conn, kind, target, args)
    if twin is not None:
        if ctx.dry_run:
            ctx.out(f"(unfinished job {twin.id} of this command would be resumed)")
            ctx.out(twin.plan.to_text())
            return ChangeOutcome(twin.plan, None)
        if await journal.job_is_locked(conn, twin.id):
            raise JobError(f"job {twin.id} for this change is running in another process",
                           hint="watch it with `online status`")
        result = await Executor(ctx.dsn, ctx.options, ctx.progress, ctx.throttles).run(
            job_id=twin.id)
        return ChangeOutcome(twin.plan, result)
    plan = await make_plan()
    if ctx.dry_run:
        ctx.out(plan.to_text())
        return ChangeOutcome(plan, None)
    result = await Executor(ctx.dsn, ctx.options, ctx.progress, ctx.throttles).run(plan)
    return ChangeOutcome(plan, result)


async def change_table(ctx: RunContext, table: QualifiedName, kind: str, args: Any,
                       make_plan: Callable[[Conn, TableFacts], Awaitable[Plan]]) -> ChangeOutcome:
    """The envelope of a change to one table: resolve it, then resume or plan and run.

    ``args`` is the strategy's (validated) arguments dataclass; ``make_plan``
    gathers whatever else the strategy needs from fresh table facts.  Commands
    whose arguments depend on the resolved name (default index names) call
    :func:`plan_and_run` directly.
    """
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, table)
        resolved = QualifiedName(schema, rel)

        async def planner() -> Plan:
            return await make_plan(conn, await catalog.table_facts(conn, resolved))

        return await plan_and_run(ctx, conn, kind, resolved.quoted(), asdict(args), planner)

