"""Job commands: ``status``, ``resume`` (and, later, pause/cancel/rollback)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pgonline.catalog.tables import estimate_rows
from pgonline.connection import Conn, connection
from pgonline.engine import journal
from pgonline.engine.change import RunContext
from pgonline.engine.executor import Executor, JobResult
from pgonline.engine.journal import JobStatus, StepStatus


@dataclass(frozen=True)
class StepRow:
    id: str
    phase: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    attempts: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "phase": self.phase, "status": self.status,
                "started_at": _iso(self.started_at), "finished_at": _iso(self.finished_at),
                "attempts": self.attempts, "error": self.error}


@dataclass(frozen=True)
class JobRow:
    """Everything ``online status`` shows of one job, read from its journal."""

    id: int
    kind: str
    target: str
    status: str  # the journal's status, "interrupted (runner gone)" for a dead runner
    steps_done: int
    steps_total: int
    current_step: str | None
    rows_done: int | None
    rows_total: int | None
    percent: float | None
    updated_at: datetime  # moves with every backfill checkpoint
    error: str | None
    hint: str | None
    # Steps whose undo ran in a rollback (and those that had nothing to undo).
    undone: tuple[str, ...] = ()
    nothing_to_undo: tuple[str, ...] = ()
    # running, throttled, paused, waiting for cut-over, interrupted, failed,
    # cancelled, done, rolled back.
    state: str = ""
    phase: str | None = None
    steps: tuple[StepRow, ...] = ()
    rows_per_s: float | None = None  # over the last minute
    eta_s: float | None = None
    batch_size: int | None = None
    throttled_by: str | None = None
    runner_pid: int | None = None
    runner_host: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    next_command: str | None = None  # how to continue or undo it

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "table": self.target, "state": self.state,
            "status": self.status, "phase": self.phase, "step": self.current_step,
            "steps": [s.to_json() for s in self.steps],
            "rows_done": self.rows_done, "rows_total": self.rows_total,
            "percent": None if self.percent is None else round(self.percent, 1),
            "rows_per_s": None if self.rows_per_s is None else round(self.rows_per_s, 1),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "batch_size": self.batch_size, "throttled_by": self.throttled_by,
            "runner_pid": self.runner_pid, "runner_host": self.runner_host,
            "settings": self.settings, "last_error": self.error, "hint": self.hint,
            "next_command": self.next_command, "updated_at": _iso(self.updated_at),
        }


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


_STATES = {JobStatus.WAITING: "waiting for cut-over", JobStatus.ROLLED_BACK: "rolled back"}


def _state(job: journal.Job, runner_alive: bool) -> str:
    if job.status is JobStatus.RUNNING:
        if not runner_alive:
            return "interrupted"
        return "throttled" if job.throttled_by else "running"
    return _STATES.get(job.status, job.status.value)


def _next_command(job: journal.Job, state: str, has_done_steps: bool) -> str | None:
    if state in ("running", "throttled"):
        return f"online status {job.id} --watch"
    if job.status in (JobStatus.PAUSED, JobStatus.WAITING, JobStatus.INTERRUPTED,
                      JobStatus.FAILED, JobStatus.RUNNING):
        undo = f" (or undo it: online rollback {job.id})" if has_done_steps else ""
        return f"online resume {job.id}{undo}"
    if job.status is JobStatus.CANCELLED and has_done_steps:
        return f"online rollback {job.id}"
    return None


async def status(dsn: str, *, job_id: int | None = None, include_finished: bool = True) -> list[JobRow]:
    rows: list[JobRow] = []
    async with connection(dsn) as conn:
        jobs = ([await journal.load_job(conn, job_id)] if job_id is not None
                else await journal.list_jobs(conn, include_finished=include_finished))
        for job in jobs:
            rows.append(await _row(conn, job))
    return rows


async def _row(conn: Conn, job: journal.Job) -> JobRow:
    recs = await journal.steps(conn, job.id)
    done = sum(1 for r in recs.values() if r.status is StepStatus.DONE)
    current = next((r.step_id for r in recs.values() if r.status is not StepStatus.DONE), None)
    if job.status is JobStatus.ROLLED_BACK:
        current = None
    # In the order rollback undid them: last step first.
    undone = tuple(r.step_id for r in reversed(recs.values()) if r.status is StepStatus.UNDONE)
    no_undo = tuple(r.step_id for r in reversed(recs.values()) if r.status is StepStatus.NO_UNDO)
    phases = {s.id: s.phase.value for s in job.plan.steps}
    steps = tuple(StepRow(r.step_id, phases.get(r.step_id, "?"), r.status.value, r.started_at,
                          r.finished_at, r.attempts, r.error) for r in recs.values())
    rows_done = rows_total = batch = None
    pct = rate = eta = None
    updated = job.updated_at
    # A partitioned table's backfill is one step per leaf: the totals are over all
    # of them (a leaf not started yet counts with its row estimate).
    fills = [s for s in job.plan.steps if s.backfill is not None]
    cps = [(s, await journal.load_checkpoint(conn, job.id, s.id)) for s in fills]
    if any(cp is not None for _, cp in cps):
        rows_done = rows_total = 0
        finished = True
        for s, cp in cps:
            if cp is None:
                assert s.backfill is not None
                rows_total += await estimate_rows(conn, s.backfill.schema, s.backfill.table)
                finished = False
                continue
            rows_done += cp.rows_done
            rows_total += max(cp.rows_total, cp.rows_done)
            finished = finished and cp.finished
            batch = cp.batch_size
            if cp.updated_at is not None and cp.updated_at > updated:
                updated = cp.updated_at
            if not cp.finished and recs[s.id].status is StepStatus.RUNNING:
                rate = cp.rows_per_s
        rows_total = max(rows_total, rows_done)
        pct = 100.0 if finished or rows_total == 0 else 100.0 * rows_done / rows_total
        if rate:
            eta = max(0.0, (rows_total - rows_done) / rate)
    alive = job.status is not JobStatus.RUNNING or await journal.job_is_locked(conn, job.id)
    state = _state(job, alive)
    st = job.status.value if alive else "interrupted (runner gone)"
    running = current is not None and state in ("running", "throttled")
    return JobRow(
        job.id, job.kind, job.target, st, done, len(recs), current, rows_done, rows_total, pct,
        updated, job.error, job.hint, undone, no_undo, state=state,
        phase=phases.get(current) if current else None, steps=steps,
        rows_per_s=rate if running else None, eta_s=eta if running else None, batch_size=batch,
        throttled_by=job.throttled_by if state == "throttled" else None,
        runner_pid=job.runner_pid, runner_host=job.runner_host, settings=job.settings,
        next_command=_next_command(job, state, done > 0 or bool(undone)),
    )


async def resume(ctx: RunContext, job_id: int) -> JobResult:
    return await Executor(ctx.dsn, ctx.options, ctx.progress, ctx.throttles).run(job_id=job_id)


async def rollback(ctx: RunContext, job_id: int, *, confirm: bool = False) -> JobResult:
    return await Executor(ctx.dsn, ctx.options, ctx.progress, ctx.throttles).rollback(
        job_id, confirm=confirm, dry_run=ctx.dry_run, out=ctx.out)


def rollback_summary(result: JobResult) -> str:
    """The one line ``online rollback`` prints: exactly which steps were undone."""
    text = (f"job {result.job_id} rolled back; undone: "
            f"{', '.join(result.steps_run) if result.steps_run else 'nothing'}")
    if result.nothing_to_undo:
        text += f" (nothing to undo for: {', '.join(result.nothing_to_undo)})"
    return text


async def show_plan(dsn: str, job_id: int) -> str:
    async with connection(dsn) as conn:
        job = await journal.load_job(conn, job_id)
    return job.plan.to_text()

