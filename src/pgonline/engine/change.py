"""What every change command shares: resume-or-plan, then dry-run or execute."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg

from pgonline import registry
from pgonline.catalog import citus, tables
from pgonline.catalog import indexes as index_catalog
from pgonline.connection import Conn, connection, set_session
from pgonline.engine import journal
from pgonline.engine.executor import ExecOptions, Executor, JobResult
from pgonline.engine.plan import Plan, fingerprint
from pgonline.engine.progress import Progress
from pgonline.errors import JobError, LockUnavailableError, PgOnlineError
from pgonline.registry import Change
from pgonline.safety.throttle import Throttles
from pgonline.sql.identifiers import QualifiedName


@dataclass
class RunContext:
    """Everything a change command needs besides its own arguments."""

    dsn: str
    options: ExecOptions = field(default_factory=ExecOptions)
    progress: Progress = field(default_factory=Progress)
    # The watchers/throttles the CLI built from this command's options (cli.options).
    throttles: Throttles = field(default_factory=Throttles)
    dry_run: bool = False
    out: Callable[[str], None] = print


@dataclass(frozen=True)
class ChangeOutcome:
    plan: Plan
    result: JobResult | None  # None for a dry run


# How long a command waits for another pgonline process that is planning a
# change on the same table (it holds the table lock only until its job row
# exists, so this is the length of a planning, pre-flight queries included).
PLANNING_WAIT_S = 60.0


async def unfinished_twin(conn: Conn, kind: str, target: str,
                          args: dict[str, Any]) -> journal.Job | None:
    """An unfinished job of the very same command, if the journal has one."""
    if await journal.schema_version(conn) is None:
        return None
    return await journal.find_unfinished(conn, fingerprint(kind, target, args))


async def server_now(conn: Conn) -> datetime:
    """The server's clock: when a command began, to tell its twins from earlier runs."""
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    now: datetime = row[0]
    return now


async def plan_and_run(ctx: RunContext, conn: Conn, kind: str, target: str, args: dict[str, Any],
                       make_plan: Callable[[], Awaitable[Plan]], *,
                       started: datetime | None = None) -> ChangeOutcome:
    """Resume the same command's unfinished job, or plan anew; then print or execute.

    ``started`` is when the command began (:func:`server_now`), if it looked
    anything up before calling this; by default, now.

    ``make_plan`` gathers catalog facts and calls the strategy; it is only
    called when there is no unfinished twin, because a half-applied change
    would make the catalog disagree with the original plan.

    One unfinished job per table: from before the twin lookup until the job
    row exists and its runner holds the job's lock, this process holds the
    table's advisory lock (keyed by OID), so of two identical commands
    started at once exactly one creates (or resumes) the job and the other
    then finds it running and exits with a JobError.  The unique index over
    unfinished jobs per table is the database's backstop.
    """
    if ctx.dry_run:
        twin = await unfinished_twin(conn, kind, target, args)
        if twin is not None:
            ctx.out(f"(unfinished job {twin.id} of this command would be resumed)")
            ctx.out(twin.plan.to_text())
            return ChangeOutcome(twin.plan, None)
        plan = await make_plan()
        ctx.out(plan.to_text())
        return ChangeOutcome(plan, None)
    if started is None:
        started = await server_now(conn)
    version = await journal.schema_version(conn)
    if version is not None and version < journal.SCHEMA_VERSION:
        await journal.ensure_schema(conn)  # upgrade in place before looking by table OID
    table_oid = await journal.relation_oid(conn, target)
    if table_oid is None:
        # No such relation: nothing to exclude; the planner reports it properly.
        # (A drop-index whose index is gone passes the table its last job was
        # journaled under, so a twin that just dropped it is found below.)
        plan = await make_plan()
        result = await _executor(ctx).run(plan)
        return ChangeOutcome(plan, result)
    async with journal.table_lock(conn, table_oid, wait_s=PLANNING_WAIT_S) as lock:
        executor = _executor(ctx)
        executor.on_job_opened = lock.release
        twin = await unfinished_twin(conn, kind, target, args)
        if twin is not None:
            if await journal.job_is_locked(conn, twin.id):
                raise _running(twin)
            if lock.contended_since is not None and twin.updated_at >= lock.contended_since:
                # Another process ran this very job while we waited for the table
                # lock (it stopped at a gated step, say): that was this command's run.
                raise JobError(f"job {twin.id} ({twin.kind} on {twin.target}) was run by another "
                               f"process at the same time (it is {twin.status})",
                               hint="`online status` shows it")
            return ChangeOutcome(twin.plan, await executor.run(job_id=twin.id))
        other = None if version is None else await journal.find_unfinished_on(conn, table_oid)
        try:
            plan = await make_plan()
        except PgOnlineError:
            # Planning against a table another job is changing (or just changed)
            # fails confusingly ("already exists"): name that job instead.
            await _refuse_if_twin_started(conn, version, fingerprint(kind, target, args), started)
            await _refuse_if_concurrent(conn, lock, table_oid, kind)
            if other is not None:
                raise journal.other_job_error(
                    other, await journal.job_is_locked(conn, other.id)) from None
            raise
        if other is not None:
            if other.fingerprint != plan.fingerprint:
                raise journal.other_job_error(other, await journal.job_is_locked(conn, other.id))
            # The same change, though the twin lookup missed it: a command whose
            # target spelling differs from its plan's (every command passes its
            # plan's target today, drop-index included): resume exactly that job.
            if await journal.job_is_locked(conn, other.id):
                raise _running(other)
            return ChangeOutcome(other.plan, await executor.run(job_id=other.id))
        await _refuse_if_twin_started(conn, version, plan.fingerprint, started)
        await _refuse_if_concurrent(conn, lock, table_oid, kind)
        async with AsyncExitStack() as others:
            # A plan that changes other tables too (the referencing tables of a
            # change-type --with-references) holds their locks as well, target
            # first, until its job exists: a job on one of them cannot start
            # meanwhile, and one that is unfinished there is refused here.
            locks = [lock]
            for name in plan.other_tables():
                oid = await journal.relation_oid(conn, name)
                if oid is None or oid == table_oid:
                    continue
                locks.append(await others.enter_async_context(
                    journal.table_lock(conn, oid, wait_s=PLANNING_WAIT_S)))
                held = None if version is None else await journal.find_unfinished_on(conn, oid)
                if held is not None:
                    raise journal.other_job_error(held, await journal.job_is_locked(conn, held.id))

            async def release_all() -> None:
                for each in locks:
                    await each.release()

            executor.on_job_opened = release_all
            return ChangeOutcome(plan, await executor.run(plan))


async def _refuse_if_twin_started(conn: Conn, version: int | None, fp: str,
                                  started: datetime) -> None:
    """JobError if another process created a job of this very command after we started.

    Of two identical commands started at once, the first may create its job,
    run it to the end and release the table before the second even asks for
    the table lock; the second then sees no contention, and re-planning finds
    the change already made ("already exists", "does not exist") or, worse,
    makes it again (a backfill).  A job with our fingerprint created after our
    own start can only be such a twin: that job was this command's run.
    """
    twin = None if version is None else await journal.started_since(conn, fp, started)
    if twin is not None:
        raise JobError(f"job {twin.id} ({twin.kind} on {twin.target}) was started by another "
                       f"process at the same time (it is {twin.status})",
                       hint="`online status` shows it")


def _running(job: journal.Job) -> JobError:
    return JobError(f"job {job.id} for this change is running in another process",
                    hint="watch it with `online status`")


async def _refuse_if_concurrent(conn: Conn, lock: journal.TableLock, table_oid: int,
                                kind: str) -> None:
    """JobError if the same kind of change ran on the table while we waited for its lock.

    Of two identical commands started at once, the second gets the lock only
    once the first has its job; that job may even be done by now (a small
    backfill takes milliseconds).  Running it a second time is exactly what
    must not happen.
    """
    if lock.contended_since is None:
        return
    job = await journal.active_since(conn, table_oid, kind, lock.contended_since)
    if job is not None:
        raise JobError(f"job {job.id} ({job.kind} on {job.target}) was started by another "
                       f"process at the same time (it is {job.status})",
                       hint="`online status` shows it")


def _executor(ctx: RunContext) -> Executor:
    return Executor(ctx.dsn, ctx.options, ctx.progress, ctx.throttles)


async def run_command(ctx: RunContext, kind: str, *values: Any,
                      **options: Any) -> ChangeOutcome:
    """``online <kind> VALUES... --OPTIONS``, called from Python: parse, then run.

    ``values`` and ``options`` are what the command line passes (strings,
    flags and tuples, named as in the kind's :class:`~pgonline.registry.Command`).
    """
    return await run_change(ctx, kind, registry.command(kind).parse(*values, **options))


async def run_change(ctx: RunContext, kind: str, change: Change[Any]) -> ChangeOutcome:
    """The envelope of every change: resolve its relation, then resume or plan and run.

    The command line and ``migrate up --online`` both end here, with the
    same :class:`Change` for the same change, so they find each other's jobs.
    """
    try:
        return await _run_change(ctx, kind, change)
    except psycopg.errors.LockNotAvailable as exc:
        # Only planning's session gets here (the executor handles its own).
        settings = ctx.options.settings
        raise LockUnavailableError(
            f"planning waited more than {_planning_lock_ms(ctx)} ms for a lock on the table "
            f"(another session holds a conflicting lock, e.g. ACCESS EXCLUSIVE): "
            f"{exc.diag.message_primary or str(exc).strip()}",
            hint="nothing was changed; find the session holding the table "
                 "(pg_locks, pg_stat_activity) and run the command again; --lock-timeout "
                 f"({settings.lock_timeout_ms} ms) x --max-retries bounds this wait (5 to 60 s)",
            sqlstate=exc.sqlstate) from None


def _planning_lock_ms(ctx: RunContext) -> int:
    """How long planning may wait for a lock: the DDL's whole retry budget, 5 s to a minute.

    Planning only ever asks for ACCESS SHARE (or waits on the journal's own
    serialization), and a waiting ACCESS SHARE request holds up no other
    session, so the bound is about not hanging, not about the application:
    at least a few seconds, so that a short DDL of someone else's is simply
    waited for.
    """
    budget = ctx.options.settings.lock_timeout_ms * ctx.options.max_attempts
    return max(PLANNING_LOCK_MIN_MS, min(budget, PLANNING_LOCK_MAX_MS))


PLANNING_LOCK_MIN_MS = 5_000
PLANNING_LOCK_MAX_MS = 60_000


async def _run_change(ctx: RunContext, kind: str, change: Change[Any]) -> ChangeOutcome:
    declared = registry.command(kind)
    plan_fn = registry.planner(kind)
    async with connection(ctx.dsn) as conn:
        # Planning reads the catalog, but some of it locks the table: pg_get_expr
        # and EXPLAIN take ACCESS SHARE, a pre-flight count scans.  Behind a
        # session holding ACCESS EXCLUSIVE for long, that would wait for ever
        # (harmlessly for the application: ACCESS SHARE queues behind nothing
        # but ACCESS EXCLUSIVE); bounded, the command fails with exit 5 instead.
        await conn.execute(set_session("lock_timeout", _planning_lock_ms(ctx)))
        started = await server_now(conn)
        args = change.args  # recorded in the job: the twin lookup compares them
        if declared.on_index:
            target = await _index_job_target(conn, kind, change.relation, args)
        else:
            _, schema, rel = await tables.resolve_table(conn, change.relation)
            resolved = QualifiedName(schema, rel)
            target = resolved.quoted()
            if declared.complete is not None:
                args = await declared.complete(conn, args)
        # Planning time, before any job exists: Citus distributed and reference
        # tables are refused (docs/scale.md); local tables go on as usual.
        await citus.refuse_distributed(conn, target, target)
        # A dry run may plan other arguments than it records (a preview).
        previewed = declared.preview(args) if ctx.dry_run and declared.preview else None
        planned, note = previewed if previewed is not None else (args, None)

        async def make_plan() -> Plan:
            relation: Any = (change.relation if declared.on_index
                             else await tables.table_facts(conn, resolved))
            plan = plan_fn(await declared.gather(conn, relation, planned), planned)
            return plan if note is None else replace(plan, notes=(note, *plan.notes))

        return await plan_and_run(ctx, conn, kind, target, registry.recorded_args(args), make_plan,
                                  started=started)


async def finished_before(dsn: str, kind: str, change: Change[Any]) -> journal.Job | None:
    """The newest job of this very command on ``dsn``, if it is done.

    A command that finished on a database cannot be planned there again
    (the column exists, the index exists): planning says so with a catalog
    error.  Fleet mode re-runs a command on every target after an
    interruption, so it asks this to tell "done by an earlier run" from a
    real conflict.  Arguments that ``complete`` fills in from the catalog are
    compared as given (such a command reports the conflict as it is).
    """
    async with connection(dsn) as conn:
        if await journal.schema_version(conn) is None:
            return None
        job = await journal.latest_of_command(conn, kind, registry.recorded_args(change.args))
    return job if job is not None and job.status is journal.JobStatus.DONE else None


async def _index_job_target(conn: Conn, kind: str, index: QualifiedName, args: Any) -> str:
    """The target an index change's job is journaled under: the index's table.

    The plan's target is the table (its lock is what the step waits for and
    what one-job-per-table keys on), so the command must look its job up by
    the table too.  Once the index is gone the catalog no longer knows the
    table; the newest job of this very command does -- a run that crashed
    after the drop, or an identical command that ran at the same moment.
    """
    table = await index_catalog.table_of_index(conn, index)
    if table is not None:
        return table
    if await journal.schema_version(conn) is not None:
        last = await journal.latest_of_command(conn, kind, registry.recorded_args(args))
        if last is not None:
            return str(last.target)
    return index.quoted()
