"""The executor: runs a plan's steps in order, journaling each one.

Executing never decides: the plan (stored in the journal) says what to run;
the executor only adds the safety envelope around each step:

* ``lock_timeout`` on every statement, so a DDL waiting for its lock gives up
  quickly instead of queueing application queries behind it, then retries
  with jittered backoff (on SQLSTATE classes only, see :mod:`pgonline.engine.retry`);
* transactional steps commit together with their "done" row in the journal;
* non-transactional steps (``CONCURRENTLY``) carry a ``done_if`` probe, so a
  crash between the statement and the journal update is harmless on resume;
* one runner per job, enforced by a session advisory lock;
* a lost session (terminated backend, restart, failover) is reopened within
  ``--reconnect-timeout`` and the job continues from its journal
  (:mod:`pgonline.engine.reconnect`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
import structlog

from pgonline.connection import RESET_TIMEOUTS, Conn, SessionSettings, connect, session_setup, timeouts
from pgonline.engine import journal
from pgonline.engine.backfill import Backfill, BatchOptions
from pgonline.engine.journal import Job, JobStatus, Request, StepRecord, StepStatus
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.engine.progress import Progress
from pgonline.engine.reconnect import JobTakenOver, reopen
from pgonline.engine.retry import is_connection_lost, with_retries
from pgonline.errors import (
    ConnectError,
    ConnectionLost,
    Interrupted,
    JobCancelled,
    JobError,
    JobPaused,
    LockUnavailableError,
    PgOnlineError,
    StatementError,
)
from pgonline.safety import maintenance_wait
from pgonline.safety.blockers import LockWatch, lock_hint
from pgonline.safety.throttle import Throttles

log = structlog.get_logger("pgonline.engine.executor")


@dataclass(frozen=True)
class ExecOptions:
    settings: SessionSettings = field(default_factory=SessionSettings)
    batch: BatchOptions = field(default_factory=BatchOptions)
    max_attempts: int = 30
    phase: Phase | None = None
    # After our session is lost, keep trying to reconnect this long (seconds)
    # before giving up resumably (exit 5).
    reconnect_timeout_s: float = 60.0
    # Stop before the contract phase ("waiting for cut-over") until `online resume`.
    postpone_contract: bool = False
    # Record a plan's vacuum step as done without running it (--no-vacuum).
    skip_vacuum: bool = False
    # Backfill workers (--workers): each walks its own part of the range on
    # its own connection.  Not part of the plan: how many connections walk a
    # range changes nothing the plan says, and a resume may use more or fewer.
    workers: int = 1


@dataclass(frozen=True)
class JobResult:
    job_id: int
    status: JobStatus
    resumed: bool
    seconds: float
    steps_run: tuple[str, ...]
    # What to do next when the job paused: the next phase, or what a gated step waits for.
    next_hint: str | None = None
    # Rollback only: steps that had nothing of their own to undo (steps_run
    # lists the ones whose undo ran).
    nothing_to_undo: tuple[str, ...] = ()
    # Rows this run's backfills updated (the end event's `rows`; fleet summaries show it).
    rows: int = 0


def _statement_timeout(step: Step, settings: SessionSettings) -> int:
    # A step that scans under a lock that does not block traffic may take long;
    # a step holding a blocking lock must be quick once it has the lock.
    if step.lock in (LockLevel.SHARE_UPDATE_EXCLUSIVE, LockLevel.NONE, LockLevel.ACCESS_SHARE):
        return settings.scan_statement_timeout_ms
    return settings.ddl_statement_timeout_ms


def _server_error(step: Step, exc: psycopg.Error) -> StatementError:
    diag = exc.diag
    msg = diag.message_primary or str(exc).strip()
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    return StatementError(f"step {step.id} failed: {msg}{detail} [SQLSTATE {exc.sqlstate}]",
                          sqlstate=exc.sqlstate)


class Executor:
    def __init__(self, dsn: str, options: ExecOptions, progress: Progress,
                 throttles: Throttles | None = None) -> None:
        self.dsn = dsn
        self.options = options
        self.progress = progress
        self.throttles = throttles or Throttles()
        self._relation = ""
        # The session running the job; replaced when it is lost and reopened.
        self._conn: Conn | None = None
        self._backend_pid: int | None = None
        self._step_running: str | None = None
        # Per backfill step: rows updated by this process before a lost connection.
        self._rows_updated: dict[str, int] = {}
        self._t0 = time.monotonic()  # when run() or rollback() began, for the end event
        # Called once the job row exists and this process holds the job's lock
        # (plan_and_run releases its table lock there; see journal.table_lock).
        self.on_job_opened: Callable[[], Awaitable[None]] | None = None

    async def _query_bool(self, conn: Conn, query: str) -> bool:
        cur = await conn.execute(query)
        row = await cur.fetchone()
        return bool(row and row[0])

    async def _done_already(self, conn: Conn, step: Step) -> bool:
        return step.done_if is not None and await self._query_bool(conn, step.done_if)

    async def _envelope(self, conn: Conn, job_id: int, step: Step,
                        work: Callable[[], Awaitable[None]], status: StepStatus,
                        stmt_timeout_ms: int | None) -> None:
        """Run ``work`` for ``step`` under our timeouts and record ``status``.

        A transactional step records its status in the same transaction as its
        work, so the journal can never disagree with the schema.  A
        non-transactional one (``CONCURRENTLY``) sets session timeouts, resets
        them whatever happens, and records its status afterwards; its
        ``done_if`` covers a crash in between.
        """
        lock_ms = self.options.settings.lock_timeout_ms
        if step.vacuum and status is StepStatus.DONE:
            # In the lock queue, bounded only by the statement timeout: see Step.vacuum.
            lock_ms = stmt_timeout_ms or 0
        if step.transactional:
            async with conn.transaction():
                await conn.execute(timeouts(lock_ms, stmt_timeout_ms, local=True))
                await work()
                await journal.set_step(conn, job_id, step.id, status)
            return
        await conn.execute(timeouts(lock_ms, stmt_timeout_ms, local=False))
        try:
            await work()
        finally:
            await conn.execute(RESET_TIMEOUTS)
        await journal.set_step(conn, job_id, step.id, status)

    async def _wait_for_maintenance(self, conn: Conn, step: Step, budget: float) -> float:
        """Wait outside the lock queue for maintenance on each table the step locks."""
        waited = 0.0
        for relation in step.tables or (self._relation,):
            waited += await maintenance_wait.wait_for_maintenance(
                conn, relation, max_wait_s=budget - waited)
        return waited

    async def _run_sql_step(self, conn: Conn, job_id: int, step: Step) -> bool:
        """Run one DDL step; return False if its effect was already present."""
        assert step.sql is not None
        settings = self.options.settings
        stmt_timeout = _statement_timeout(step, settings)
        skipped = False

        async def forward() -> None:
            nonlocal skipped
            skipped = await self._done_already(conn, step)
            if skipped:
                return
            if step.cleanup_if is not None and await self._query_bool(conn, step.cleanup_if):
                # A failed earlier attempt left something behind (e.g. an
                # INVALID index); remove it so this attempt starts clean.
                await conn.execute(step.cleanup_sql)  # type: ignore[arg-type]
            await conn.execute(step.sql)  # type: ignore[arg-type]

        if not step.transactional:
            await journal.set_step(conn, job_id, step.id, StepStatus.RUNNING)

        wait_budget = (settings.maintenance_wait_s
                       if maintenance_wait.applies(step) and not step.vacuum else 0.0)

        async def attempt() -> None:
            nonlocal wait_budget
            # Before each attempt: let a running VACUUM, ANALYZE or index build
            # on the table finish instead of queueing (and, for a blocking lock,
            # the application) behind it.
            wait_budget -= await self._wait_for_maintenance(conn, step, wait_budget)
            await self._envelope(conn, job_id, step, forward, StepStatus.DONE, stmt_timeout)

        async def attempts() -> None:
            await with_retries(step.id, attempt, attempts=self.options.max_attempts)

        try:
            if LockWatch.applies(step):
                # Cut-over step: log who holds/blocks our lock (side connection),
                # and cancel blockers only if --cancel-blockers-after was given.
                await LockWatch(self.dsn, step=step, relation=self._relation,
                                our_pid=conn.info.backend_pid,
                                cancel_after_s=self.throttles.cancel_blockers_after_s,
                                lock_timeout_ms=settings.lock_timeout_ms).run(attempts)
            else:
                await attempts()
        except psycopg.Error as exc:
            if is_connection_lost(exc):
                raise  # the executor reconnects and runs the step again
            raise _server_error(step, exc) from exc
        return not skipped

    async def run(self, plan: Plan | None = None, *, job_id: int | None = None) -> JobResult:
        """Start ``plan`` as a new job, or resume job ``job_id``, or the unfinished twin of ``plan``."""
        t0 = self._t0 = time.monotonic()
        conn = self._conn = await connect(self.dsn)
        try:
            setup = session_setup(self.options.settings)
            if setup is not None:
                await conn.execute(setup)
            # Misconfigured throttles (privileges, a bad --throttle-query, a
            # replica DSN that is not a standby) fail before anything is written.
            await self.throttles.prepare(conn)
            await journal.ensure_schema(conn)
            job, resumed = await self._open_job(conn, plan, job_id)  # holds the job's lock
            return await self._drive(job, resumed, t0)
        finally:
            with anyio.CancelScope(shield=True):
                await self.throttles.aclose()
            await self._conn.close()

    async def _check_request(self, conn: Conn, job_id: int) -> None:
        """Honour `online pause/cancel` from another terminal between steps."""
        req = await journal.pending_request(conn, job_id)
        if req is Request.CANCEL:
            raise JobCancelled(job_id)
        if req is Request.PAUSE:
            raise JobPaused(job_id)

    async def _open_job(self, conn: Conn, plan: Plan | None, job_id: int | None) -> tuple[Job, bool]:
        """Create or find the job and take its lock; only then read its status.

        Reading the status after the lock is what makes two processes racing
        to resume one interrupted job safe: exactly one gets the lock, and it
        sees the status the other left, not a stale one.
        """
        resumed = True
        if job_id is None:
            assert plan is not None
            existing = await journal.find_unfinished(conn, plan.fingerprint)
            if existing is not None:
                job_id = existing.id
            else:
                _refuse_a_later_phase_first(plan, self.options.phase)
                job_id = await journal.create_job(conn, plan, self.options.phase)
                resumed = False
        else:
            await journal.load_job(conn, job_id)  # "does not exist" before anything else
        if not await journal.try_lock_job(conn, job_id):
            raise JobError(f"job {job_id} is already being run by another process",
                           hint="watch it with `online status`")
        job = await journal.load_job(conn, job_id)
        if resumed and job.status.final:
            raise JobError(f"job {job.id} is {job.status}; nothing to resume")
        if self.on_job_opened is not None:
            await self.on_job_opened()
        return job, resumed

    async def _drive(self, job: Job, resumed: bool, t0: float) -> JobResult:
        assert self._conn is not None
        conn = self._conn
        plan = job.plan
        self._relation = plan.target
        records = await journal.steps(conn, job.id)
        todo = plan.only_phase(self.options.phase)
        if self.options.phase is not None:
            # Phases build on each other: a backfill before its expand step (or a
            # contract before its backfill) would fail half-way or be wrong.
            earlier = [s for s in steps_before(plan, self.options.phase)
                       if records[s.id].status is not StepStatus.DONE]
            if earlier:
                raise JobError(
                    f"job {job.id}: phase {self.options.phase} needs earlier steps first "
                    f"({', '.join(s.id for s in earlier)})",
                    hint=f"run `online resume {job.id} --phase {earlier[0].phase}` first",
                )
        gate = None if self.options.phase is not None else next(
            (s for s in plan.steps if s.gate and records[s.id].status is not StepStatus.DONE), None)
        if gate is not None:
            # A run of all phases stops before a step that would break code that
            # does not know the change: only an explicit --phase passes it.
            todo = todo[:todo.index(gate)]
        cutover = None
        if self.options.postpone_contract and self.options.phase is None:
            # The operator runs the cut-over (`online resume`) when it suits them.
            cutover = next((s for s in todo if s.phase is Phase.CONTRACT
                            and records[s.id].status is not StepStatus.DONE), None)
            if cutover is not None:
                todo = todo[:todo.index(cutover)]
        await journal.set_job(conn, job.id, JobStatus.RUNNING, clear_request=True)
        self._backend_pid = conn.info.backend_pid
        self.progress.job(job.id, plan.kind, plan.target, resumed)
        ran: list[str] = []
        # A loss after progress (a step or a batch done) gets a fresh
        # --reconnect-timeout; a loss without any keeps the old deadline, so a
        # session that keeps dying at the same point cannot loop forever.
        last_loss: tuple[tuple[str, ...], int] | None = None
        deadline = 0.0
        try:
            while True:
                try:
                    await self._run_steps(job, todo, records, ran)
                    break
                except psycopg.Error as exc:
                    if not is_connection_lost(exc):
                        raise
                    marker = (tuple(ran), sum(self._rows_updated.values()))
                    if marker != last_loss:
                        last_loss = marker
                        deadline = time.monotonic() + self.options.reconnect_timeout_s
                    records = await self._reconnect(job, exc, deadline)
                    lost_step, self._step_running = self._step_running, None
                    if lost_step is not None and lost_step not in ran \
                            and records[lost_step].status is StepStatus.DONE:
                        # Its transaction committed just before the session ended.
                        ran.append(lost_step)
        except JobCancelled as exc:
            await self._finish(job.id, JobStatus.CANCELLED, exc)
            raise
        except JobPaused as exc:
            await self._finish(job.id, JobStatus.PAUSED, exc)
            raise
        except JobTakenOver:
            raise  # the journal is the other runner's now: record nothing
        except ConnectionLost as exc:
            # Resumable: everything done so far is committed with its journal row.
            await self._finish(job.id, JobStatus.INTERRUPTED, exc)
            raise
        except PgOnlineError as exc:
            if isinstance(exc, LockUnavailableError):
                exc.hint = lock_hint(job.id, exc.blocker)
            # The same way out on the terminal as in the journal.
            exc.hint = exc.hint or (f"fix the cause, then `online resume {job.id}`; "
                                    f"or undo the expand phase with `online rollback {job.id}`")
            await self._finish(job.id, JobStatus.FAILED, exc)
            raise
        except (anyio.get_cancelled_exc_class(), KeyboardInterrupt) as exc:
            await self._finish(job.id, JobStatus.INTERRUPTED, exc)
            raise Interrupted(
                f"job {job.id} interrupted; completed steps and backfill progress are saved",
                hint=f"continue with `online resume {job.id}` (or re-run the same command)",
            ) from None
        finally:
            self.progress.close()
        remaining = [s.id for s in plan.steps
                     if s.id not in ran and records[s.id].status is not StepStatus.DONE]
        if cutover is not None and cutover.id in remaining:
            hint = (f"waiting for cut-over: `online resume {job.id}` runs the contract phase "
                    f"({cutover.id}) when you are ready")
            await self._finish(job.id, JobStatus.WAITING, None, default_hint=hint)
            return JobResult(job.id, JobStatus.WAITING, resumed, time.monotonic() - t0,
                             tuple(ran), next_hint=hint, rows=self._rows())
        if remaining:
            nxt = next(s.phase for s in plan.steps if s.id in remaining)
            hint = f"next phase: `online resume {job.id} --phase {nxt}`"
            if gate is not None and gate.id in remaining:
                hint = f"{gate.gate}; then `online resume {job.id} --phase {gate.phase}`"
            await self._finish(job.id, JobStatus.PAUSED, None, default_hint=hint)
            return JobResult(job.id, JobStatus.PAUSED, resumed, time.monotonic() - t0, tuple(ran),
                             next_hint=hint, rows=self._rows())
        await self._finish(job.id, JobStatus.DONE, None)
        return JobResult(job.id, JobStatus.DONE, resumed, time.monotonic() - t0, tuple(ran),
                         rows=self._rows())

    def _rows(self) -> int:
        return sum(self._rows_updated.values())

    async def _run_steps(self, job: Job, todo: tuple[Step, ...],
                         records: dict[str, StepRecord], ran: list[str]) -> None:
        """Run the steps the journal does not list as done, in plan order.

        Called again with a re-read journal after a reconnect, so it must rely
        on ``records`` alone for what is left.
        """
        assert self._conn is not None
        conn = self._conn
        plan = job.plan
        for i, step in enumerate(plan.steps, 1):
            if step not in todo:
                continue
            if records[step.id].status is StepStatus.DONE:
                if step.id not in ran:
                    self.progress.step_skipped(step, "done in an earlier run")
                continue
            await self._check_request(conn, job.id)
            if step.vacuum and self.options.skip_vacuum:
                # Nothing structural depends on it: the job goes on as if it ran.
                async with conn.transaction():
                    await journal.set_step(conn, job.id, step.id, StepStatus.DONE)
                self.progress.step_skipped(step, "--no-vacuum")
                ran.append(step.id)
                continue
            self.progress.step_started(i, len(plan.steps), step)
            s0 = time.monotonic()
            self._step_running = step.id
            if step.backfill is not None:
                # Continues from the last committed checkpoint, so rows done
                # before a lost connection are neither redone nor counted twice.
                backfill = Backfill(conn, job.id, step, settings=self.options.settings,
                                    opts=self.options.batch, progress=self.progress,
                                    throttles=self.throttles,
                                    rows_updated=self._rows_updated.get(step.id, 0),
                                    workers=self.options.workers, dsn=self.dsn)
                try:
                    await backfill.run()
                except psycopg.Error as exc:
                    if is_connection_lost(exc):
                        raise
                    # A batch failed for good (e.g. a value the conversion
                    # rejects): a StatementError, so the job is marked failed.
                    raise _server_error(step, exc) from exc
                finally:
                    # Rows of committed batches: carried over to a new connection,
                    # and reported by the job's end event.
                    self._rows_updated[step.id] = backfill.rows_updated
            elif not await self._run_sql_step(conn, job.id, step):
                self.progress.step_skipped(step, "effect already present")
            self._step_running = None
            self.progress.step_finished(step, time.monotonic() - s0)
            ran.append(step.id)

    async def _reconnect(self, job: Job, exc: psycopg.Error, deadline: float) -> dict[str, StepRecord]:
        """Replace the lost session, take the job back and return the re-read journal.

        Retries (jittered backoff) until ``deadline`` (``reconnect_timeout_s``
        after the first loss without progress), also when the new session is
        lost again before the job is back in hand.
        """
        timeout = self.options.reconnect_timeout_s
        log.warning("connection lost; reconnecting", job=job.id, step=self._step_running,
                    sqlstate=exc.sqlstate, error=str(exc).strip(), reconnect_timeout_s=timeout)
        hint = (f"completed steps and backfill progress are saved; once the server "
                f"is reachable, continue with `online resume {job.id}`")
        while True:
            assert self._conn is not None
            with anyio.CancelScope(shield=True):
                await self._conn.close()  # already broken: this only frees it
            if time.monotonic() >= deadline:
                # Reconnecting works, but the session keeps ending with no progress.
                raise ConnectionLost(
                    f"job {job.id}: the connection to PostgreSQL was lost again and again "
                    f"without progress for --reconnect-timeout {timeout:g}s (last: "
                    f"{' '.join(str(exc).split())} [SQLSTATE {exc.sqlstate}])", hint=hint,
                    sqlstate=exc.sqlstate)
            try:
                conn = await reopen(self.dsn, deadline=deadline, what=str(job.id))
            except ConnectError as err:
                raise ConnectionLost(
                    f"job {job.id}: lost the connection to PostgreSQL and could not get it "
                    f"back within --reconnect-timeout {timeout:g}s ({' '.join(err.message.split())})",
                    hint=hint,
                ) from None
            self._conn = conn
            try:
                records = await self._take_job_back(conn, job)
            except psycopg.Error as again:
                if not is_connection_lost(again):
                    raise
                log.warning("connection lost again while reconnecting", job=job.id,
                            sqlstate=again.sqlstate, error=str(again).strip())
                continue
            log.warning("reconnected; continuing from the journal", job=job.id,
                        backend_pid=conn.info.backend_pid)
            return records

    async def _take_job_back(self, conn: Conn, job: Job) -> dict[str, StepRecord]:
        """On a new session: our settings, the job lock, and proof nobody ran the job meanwhile."""
        setup = session_setup(self.options.settings)
        if setup is not None:
            await conn.execute(setup)
        if not await journal.try_lock_job(conn, job.id):
            raise JobTakenOver(f"job {job.id} was taken over by another process while our "
                               f"connection was lost; stopping here",
                               hint="watch it with `online status`")
        status, pid = await journal.runner(conn, job.id)
        if status is not JobStatus.RUNNING or pid != self._backend_pid:
            # Someone resumed (and maybe finished, paused or rolled back) the job
            # in the gap: its journal no longer describes our run.  (Our lock
            # goes when run() closes this session.)
            raise JobTakenOver(f"job {job.id} was run by another process while our connection "
                               f"was lost (now {status}); stopping here",
                               hint="see it with `online status`")
        # Keeps a pending pause/cancel request: it is honoured at the next check.
        await journal.set_job(conn, job.id, JobStatus.RUNNING)
        self._backend_pid = conn.info.backend_pid
        return await journal.steps(conn, job.id)

    async def _finish(self, job_id: int, status: JobStatus, exc: BaseException | None,
                      default_hint: str | None = None) -> None:
        """Record the job's end on a fresh connection, shielded from cancellation.

        The work connection may be mid-statement or poisoned by the very error
        we are recording; its open transaction (at most one batch) rolls back
        when it closes, which the checkpoint already accounts for.
        """
        message = getattr(exc, "message", None) or (str(exc) if exc else None) or None
        hint = getattr(exc, "hint", None) or default_hint
        # The last event of every run: job.finished (it ran what it was asked to),
        # job.stopped (paused or cancelled on request, interrupted) or job.failed.
        event = ("job.failed" if status is JobStatus.FAILED
                 else "job.finished" if exc is None else "job.stopped")
        (log.error if status is JobStatus.FAILED else log.info)(
            event, job=job_id, status=str(status),
            duration_s=round(time.monotonic() - self._t0, 3),
            rows=self._rows(), error=message, hint=hint,
            sqlstate=getattr(exc, "sqlstate", None))
        with anyio.CancelScope(shield=True):
            try:
                ctl = await connect(self.dsn)
            except PgOnlineError:
                log.error("could not record job status", job=job_id, status=str(status))
                return
            try:
                await journal.set_job(ctl, job_id, status, error=message, hint=hint,
                                      clear_request=True)
            finally:
                await ctl.close()

    async def rollback(self, job_id: int, *, confirm: bool = False, dry_run: bool = False,
                       out: Any = None) -> JobResult:
        """Undo a job's steps in reverse order, each under the same safety envelope.

        Only the ``undo_sql`` the strategy planned is run (executing never
        decides).  Before anything is undone, every step whose effect may be in
        the database is checked: one the plan marks irreversible (a dropped
        column, a cut-over, a backfill of live data) refuses the whole
        rollback, so a job is never left half undone by design.  Undoing a
        finished job may discard data the application has written since
        (e.g. dropping the new column), so it needs ``confirm``.

        The job's status is not changed while undoing (its lock keeps other
        runners out); if an undo fails, the job keeps the status it had (a
        finished job stays finished, never "failed") and its steps record
        which ones were undone, so ``online rollback`` again continues.
        """
        t0 = time.monotonic()
        conn = await connect(self.dsn)
        try:
            await journal.ensure_schema(conn)
            await journal.load_job(conn, job_id)  # "does not exist" first
            if not await journal.try_lock_job(conn, job_id):
                raise JobError(f"job {job_id} is running in another process",
                               hint=f"stop it first with `online cancel {job_id}` or Ctrl-C")
            # Read under the lock: no runner can change it from here on.
            job = await journal.load_job(conn, job_id)
            records = await journal.steps(conn, job.id)
            todo = steps_to_undo(job.plan, records)
            if job.status in (JobStatus.ROLLED_BACK, JobStatus.CANCELLED) and not todo:
                raise JobError(f"job {job.id} has nothing left to roll back")
            for step in todo:
                reason = irreversible(step)
                if reason is not None:
                    raise JobError(
                        f"job {job.id} cannot be rolled back: step {step.id} is irreversible; "
                        f"nothing was undone",
                        hint=reason,
                    )
            if job.status is JobStatus.DONE and not confirm:
                raise JobError(
                    f"job {job.id} finished; rolling it back may discard data written since",
                    hint=f"re-run with `online rollback {job.id} --confirm` if that is intended",
                )
            if dry_run:
                lines = [f"Rollback of job {job.id} ({job.plan.kind} on {job.plan.target}):"]
                for s in todo:
                    lines.append(f"- undo {s.id}: " + (s.undo_sql or "(nothing to undo)"))
                (out or print)("\n".join(lines))
                return JobResult(job.id, job.status, True, time.monotonic() - t0, ())
            self._relation = job.plan.target
            undone: list[str] = []
            nothing: list[str] = []
            try:
                for s in todo:
                    (undone if await self._undo_step(conn, job.id, s) else nothing).append(s.id)
            except PgOnlineError as exc:
                left = [s.id for s in todo if s.id not in undone and s.id not in nothing]
                message = (f"rollback of job {job.id} stopped at step {left[0]}: {exc.message}; "
                           f"undone: {_ids(undone)}; not undone: {_ids(left)}")
                hint = f"fix the cause, then run `online rollback {job.id}` again"
                await self._rollback_stopped(job, message, hint)
                raise type(exc)(message, hint=hint) from exc
            except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
                message = f"rollback of job {job.id} interrupted; undone: {_ids(undone)}"
                hint = f"continue with `online rollback {job.id}`"
                await self._rollback_stopped(job, message, hint)
                raise Interrupted(message, hint=hint) from None
            await self._finish(job.id, JobStatus.ROLLED_BACK, None)
            log.info("job rolled back", job=job.id, undone=undone, nothing_to_undo=nothing)
            return JobResult(job.id, JobStatus.ROLLED_BACK, True, time.monotonic() - t0,
                             tuple(undone), nothing_to_undo=tuple(nothing))
        finally:
            await conn.close()

    async def _rollback_stopped(self, job: Job, message: str, hint: str) -> None:
        """Record a stopped rollback on a fresh connection; the job keeps its status."""
        # A RUNNING status we could lock means its runner died: say so.
        status = JobStatus.INTERRUPTED if job.status is JobStatus.RUNNING else job.status
        log.error("rollback stopped", job=job.id, error=message)
        with anyio.CancelScope(shield=True):
            try:
                ctl = await connect(self.dsn)
            except PgOnlineError:
                log.error("could not record the stopped rollback", job=job.id)
                return
            try:
                await journal.restore_status(ctl, job.id, status, error=message, hint=hint)
            finally:
                await ctl.close()

    async def _undo_step(self, conn: Conn, job_id: int, step: Step) -> bool:
        """Undo one step; False when it had nothing of its own to reverse."""
        settings = self.options.settings
        if step.undo_sql is None:
            # Nothing structural to reverse (a VALIDATE, the backfill of a column
            # an earlier step added): its effect goes with what that step created.
            async with conn.transaction():
                await journal.set_step(conn, job_id, step.id, StepStatus.NO_UNDO)
            return False
        undo = step.undo_sql
        self.progress.step_started(0, 0, step)

        async def reverse() -> None:
            if step.undo_cleanup_if is not None and await self._query_bool(conn,
                                                                           step.undo_cleanup_if):
                # An earlier attempt of this undo failed half-way (an INVALID
                # index): remove it, so this attempt really rebuilds.
                await conn.execute(step.undo_cleanup_sql)  # type: ignore[arg-type]
            await conn.execute(undo)

        # Every undo is DDL (a DROP of what the step created): at least SHARE
        # UPDATE EXCLUSIVE, so it would queue behind maintenance just the same.
        wait_budget = settings.maintenance_wait_s

        async def run_once() -> None:
            nonlocal wait_budget
            wait_budget -= await self._wait_for_maintenance(conn, step, wait_budget)
            # As before the envelope existed: outside a transaction an undo (DROP
            # INDEX CONCURRENTLY) waits for other transactions, so no statement limit.
            stmt_timeout = settings.ddl_statement_timeout_ms if step.transactional else None
            await self._envelope(conn, job_id, step, reverse, StepStatus.UNDONE, stmt_timeout)

        try:
            await with_retries(f"undo {step.id}", run_once, attempts=self.options.max_attempts)
        except psycopg.Error as exc:
            raise _server_error(step, exc) from exc
        return True


def steps_before(plan: Plan, phase: Phase) -> list[Step]:
    """The plan's steps of the phases before ``phase``, in plan order."""
    order = list(Phase)
    return [s for s in plan.steps if order.index(s.phase) < order.index(phase)]


def _refuse_a_later_phase_first(plan: Plan, phase: Phase | None) -> None:
    """A new job started at a later phase: refuse before the job exists.

    Nothing of the plan has run, so every step of an earlier phase is
    missing; a job created anyway would hold the table (one unfinished job
    per table) until someone resumed or rolled it back.
    """
    if phase is None:
        return
    earlier = steps_before(plan, phase)
    if earlier:
        raise JobError(
            f"phase {phase} needs earlier steps first ({', '.join(s.id for s in earlier)}); "
            f"nothing was started",
            hint=f"run the same command with `--phase {earlier[0].phase}` first "
            "(or without --phase for all phases)",
        )


def _ids(ids: list[str]) -> str:
    return ", ".join(ids) if ids else "nothing"


def steps_to_undo(plan: Plan, records: dict[str, journal.StepRecord]) -> list[Step]:
    """The steps whose effect may be in the database, last first.

    Done steps, and steps that stopped part-way with a lasting effect: a
    non-transactional one (an interrupted CREATE INDEX CONCURRENTLY leaves an
    INVALID index) or a backfill (its committed batches stay).  A failed
    transactional step left nothing: its transaction rolled back.
    """
    partial = (StepStatus.RUNNING, StepStatus.FAILED)
    return [s for s in reversed(plan.steps)
            if records[s.id].status is StepStatus.DONE
            or (records[s.id].status in partial and (not s.transactional or s.is_backfill))]


# Plans journaled before ``Step.irreversible`` existed marked such steps with an
# undo that raises this (strategies' former refuse_undo()).
_LEGACY_REFUSAL = re.compile(r"pgonline: this step cannot be rolled back: (.*?)'\s*;\s*END",
                             re.DOTALL)


def irreversible(step: Step) -> str | None:
    """Why rollback cannot undo ``step`` (None: it can, or it has nothing to undo)."""
    if step.irreversible is not None:
        return step.irreversible
    legacy = _LEGACY_REFUSAL.search(step.undo_sql or "")
    return legacy.group(1).replace("''", "'") if legacy else None
