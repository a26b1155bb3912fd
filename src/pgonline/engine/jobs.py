"""Job commands: ``status``, ``resume`` (and, later, pause/cancel/rollback)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pgonline.connection import connection
from pgonline.engine import journal
from pgonline.engine.change import RunContext
from pgonline.engine.executor import Executor, JobResult
from pgonline.engine.journal import JobStatus, StepStatus


@dataclass(frozen=True)
class JobRow:
    id: int
    kind: str
    target: str
    status: str
    steps_done: int
    steps_total: int
    current_step: str | None
    rows_done: int | None
    rows_total: int | None
    percent: float | None
    updated_at: datetime
    error: str | None
    hint: str | None
    # Steps whose undo ran in a rollback (and those that had nothing to undo).
    undone: tuple[str, ...] = ()
    nothing_to_undo: tuple[str, ...] = ()


async def status(dsn: str, *, job_id: int | None = None, include_finished: bool = True) -> list[JobRow]:
    rows: list[JobRow] = []
    async with connection(dsn) as conn:
        jobs = ([await journal.load_job(conn, job_id)] if job_id is not None
                else await journal.list_jobs(conn, include_finished=include_finished))
        for job in jobs:
            recs = await journal.steps(conn, job.id)
            done = sum(1 for r in recs.values() if r.status is StepStatus.DONE)
            current = next((r.step_id for r in recs.values() if r.status is not StepStatus.DONE), None)
            if job.status is JobStatus.ROLLED_BACK:
                current = None
            # In the order rollback undid them: last step first.
            undone = tuple(r.step_id for r in reversed(recs.values())
                           if r.status is StepStatus.UNDONE)
            no_undo = tuple(r.step_id for r in reversed(recs.values())
                            if r.status is StepStatus.NO_UNDO)
            rows_done = rows_total = None
            pct = None
            bf = next((s for s in job.plan.steps if s.backfill is not None), None)
            if bf is not None:
                cp = await journal.load_checkpoint(conn, job.id, bf.id)
                if cp is not None:
                    rows_done, rows_total = cp.rows_done, max(cp.rows_total, cp.rows_done)
                    pct = 100.0 if cp.finished or rows_total == 0 else 100.0 * rows_done / rows_total
            st = job.status.value
            if job.status is JobStatus.RUNNING and not await journal.job_is_locked(conn, job.id):
                # The runner died without recording it (kill -9, lost connection).
                st = "interrupted (runner gone)"
            rows.append(JobRow(job.id, job.kind, job.target, st, done, len(recs), current,
                               rows_done, rows_total, pct, job.updated_at, job.error, job.hint,
                               undone, no_undo))
    return rows


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

