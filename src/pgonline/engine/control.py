"""Job control from another terminal: ``online jobs``, ``pause``, ``cancel``, ``set``,
``throttle`` and ``unthrottle``.

A running job is never signalled directly.  The request is written to its
journal row (``jobs.request``); the runner reads it between backfill batches
and between steps, i.e. only at points where everything before is committed
and journaled, so stopping there leaves the table consistent and the job
resumable (pause) or ready for ``online rollback`` (cancel).

A job nobody is running (paused, interrupted, failed) is handled here at
once: the job's advisory lock is taken first, so no runner can start while
we change its status.

``online set`` and ``online throttle`` only write the job's row (its live
settings, its manual throttle).  A running backfill reads that row with
every checkpoint, so the next batch obeys; the settings stay with the job,
so a later ``online resume`` applies them too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from pgonline.connection import Conn, connection
from pgonline.engine import journal
from pgonline.engine.jobs import JobRow, status
from pgonline.engine.journal import JobStatus, Request
from pgonline.errors import JobError, UsageError

log = structlog.get_logger("pgonline.engine.control")
# What `online set` may change while a job runs (BatchOptions and watchers).
SETTABLE = ("batch_size", "sleep_ms", "target_batch_ms", "max_lag", "max_active_sessions")


@dataclass(frozen=True)
class ControlOutcome:
    job_id: int
    status: str
    message: str
    acknowledged: bool


async def list_jobs(dsn: str, *, include_finished: bool = False) -> list[JobRow]:
    return await status(dsn, include_finished=include_finished)


def _rollback_hint(job_id: int) -> str:
    return (f"the table is consistent; undo what the job changed with `online rollback {job_id}`, "
            f"or leave it as is")


async def request_stop(dsn: str, job_id: int, req: Request, *, wait_s: float = 60.0,
                       poll_s: float = 0.2) -> ControlOutcome:
    """Ask job ``job_id`` to pause or cancel; wait up to ``wait_s`` for the runner to stop."""
    verb = "pause" if req is Request.PAUSE else "cancel"
    async with connection(dsn) as conn:
        cur = await conn.execute("SELECT to_regclass('pgonline.jobs') IS NOT NULL")
        row = await cur.fetchone()
        if not row or not row[0]:
            raise JobError(f"job {job_id} does not exist", hint="`online jobs --all` lists jobs")
        job = await journal.load_job(conn, job_id)
        if job.status.final:
            hint = (f"`online rollback {job_id} --confirm` undoes a finished job"
                    if job.status is JobStatus.DONE else None)
            raise JobError(f"job {job_id} is {job.status}; nothing to {verb}", hint=hint)
        if await journal.try_lock_job(conn, job_id):
            # Nobody runs it, and nobody can start it while we hold its lock.
            if req is Request.PAUSE:
                return ControlOutcome(job_id, job.status.value,
                                      f"job {job_id} is not running ({job.status}); "
                                      f"nothing to pause", True)
            await journal.set_job(conn, job_id, JobStatus.CANCELLED,
                                  error="cancelled with `online cancel`",
                                  hint=_rollback_hint(job_id), clear_request=True)
            return ControlOutcome(job_id, JobStatus.CANCELLED.value,
                                  f"job {job_id} cancelled (it was {job.status}); "
                                  f"undo it with `online rollback {job_id}`", True)
        await journal.request(conn, job_id, req)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await anyio.sleep(poll_s)
            job = await journal.load_job(conn, job_id)
            if job.status is JobStatus.RUNNING and job.request is None:
                # The runner was just starting and cleared stale requests
                # (including ours) when it marked the job running: ask again.
                await journal.request(conn, job_id, req)
                continue
            if job.status is not JobStatus.RUNNING:
                done = "paused" if req is Request.PAUSE else "cancelled"
                tail = (f"; continue with `online resume {job_id}`" if req is Request.PAUSE
                        else f"; undo it with `online rollback {job_id}`")
                if job.status.value != done:
                    tail = f" ({job.error})" if job.error else ""
                return ControlOutcome(job_id, job.status.value,
                                      f"job {job_id} {job.status}{tail}", True)
            if not await journal.job_is_locked(conn, job_id):
                return ControlOutcome(job_id, "interrupted",
                                      f"job {job_id}: runner exited without recording it", True)
        return ControlOutcome(job_id, JobStatus.RUNNING.value,
                              f"{verb} of job {job_id} requested; it stops after its current "
                              f"batch or step (check with `online jobs`)", False)


async def _unfinished_job(conn: Conn, job_id: int, verb: str) -> journal.Job:
    if await journal.schema_version(conn) is None:
        raise JobError(f"job {job_id} does not exist", hint="`online jobs --all` lists jobs")
    await journal.ensure_schema(conn)  # a journal of an older version gets today's columns
    job = await journal.load_job(conn, job_id)
    if job.status.final:
        raise JobError(f"job {job_id} is {job.status}; nothing to {verb}")
    return job


async def change_settings(dsn: str, job_id: int, changes: dict[str, Any], *,
                          wait_s: float = 5.0, poll_s: float = 0.1) -> ControlOutcome:
    """``online set``: record new live settings; wait up to ``wait_s`` for the runner to apply them."""
    unknown = set(changes) - set(SETTABLE)
    if unknown or not changes:
        raise UsageError("give at least one setting to change",
                         hint="--batch-size, --sleep-ms, --target-batch-ms, --max-lag, "
                              "--max-active-sessions")
    shown = ", ".join(f"{k}={v}" for k, v in changes.items())
    async with connection(dsn) as conn:
        job = await _unfinished_job(conn, job_id, "change")
        rev = await journal.change_settings(conn, job_id, changes)
        log.info("settings changed", job=job_id, revision=rev, **changes)
        if not await journal.job_is_locked(conn, job_id):
            return ControlOutcome(job_id, job.status.value,
                                  f"job {job_id} is not running ({job.status}); {shown} "
                                  f"recorded, its next run applies them", True)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if await journal.settings_applied(conn, job_id) >= rev:
                return ControlOutcome(job_id, job.status.value,
                                      f"job {job_id} applied {shown} from its next batch", True)
            await anyio.sleep(poll_s)
        return ControlOutcome(job_id, job.status.value,
                              f"{shown} recorded for job {job_id}; its backfill applies them at "
                              f"its next batch (it has not reached one yet)", False)


async def throttle(dsn: str, job_id: int, for_s: float | None) -> ControlOutcome:
    """``online throttle``: hold the job's backfill before its next batch (for ``for_s``, or until
    ``online unthrottle``)."""
    async with connection(dsn) as conn:
        job = await _unfinished_job(conn, job_id, "throttle")
        until_at = await journal.set_throttle(conn, job_id, for_s)
        until = ("`online unthrottle`" if until_at is None
                 else until_at.astimezone().strftime("%H:%M:%S"))
        log.info("throttle requested", job=job_id, for_s=for_s)
        running = await journal.job_is_locked(conn, job_id)
        tail = "" if running else f" (it is not running now: {job.status})"
        return ControlOutcome(job_id, job.status.value,
                              f"job {job_id} throttled until {until}: its backfill waits before "
                              f"its next batch{tail}", True)


async def unthrottle(dsn: str, job_id: int) -> ControlOutcome:
    async with connection(dsn) as conn:
        job = await _unfinished_job(conn, job_id, "unthrottle")
        await journal.clear_throttle(conn, job_id)
        log.info("unthrottle requested", job=job_id)
        return ControlOutcome(job_id, job.status.value,
                              f"job {job_id} unthrottled: its backfill continues within "
                              f"a second", True)
