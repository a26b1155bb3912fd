"""The journal: jobs, steps and backfill checkpoints, stored in the target database.

Keeping the journal in the same database as the change is what makes resume
exact: a DDL step and the row saying "step done" commit in one transaction,
and so do a backfill batch and its checkpoint.  After a crash the journal can
therefore never claim more (or less) than what the database actually holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgonline.errors import JobError
from pgonline.plan import Plan

Conn = psycopg.AsyncConnection[Any]

SCHEMA = "pgonline"
SCHEMA_VERSION = 1
# Advisory lock key space: (namespace, job id).  The namespace is a constant so
# other applications' advisory locks cannot collide with ours by accident.
LOCK_NAMESPACE = 0x70676F  # "pgo"


class JobStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    CANCELLED = "cancelled"
    DONE = "done"
    ROLLED_BACK = "rolled_back"

    @property
    def final(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.CANCELLED, JobStatus.ROLLED_BACK)


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    UNDONE = "undone"


class Request(StrEnum):
    """What another terminal asked a running job to do (``online pause/cancel``)."""

    PAUSE = "pause"
    CANCEL = "cancel"


_DDL = """
CREATE SCHEMA IF NOT EXISTS pgonline;
CREATE TABLE IF NOT EXISTS pgonline.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE TABLE IF NOT EXISTS pgonline.jobs (
    id bigserial PRIMARY KEY,
    kind text NOT NULL,
    target text NOT NULL,
    fingerprint text NOT NULL,
    plan jsonb NOT NULL,
    phase text,
    status text NOT NULL,
    request text,
    error text,
    hint text,
    pid integer,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_fingerprint_idx ON pgonline.jobs (fingerprint)
    WHERE status NOT IN ('done', 'cancelled', 'rolled_back');
CREATE TABLE IF NOT EXISTS pgonline.steps (
    job_id bigint NOT NULL REFERENCES pgonline.jobs (id) ON DELETE CASCADE,
    step_id text NOT NULL,
    ord integer NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    error text,
    started_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (job_id, step_id)
);
CREATE TABLE IF NOT EXISTS pgonline.checkpoints (
    job_id bigint NOT NULL,
    step_id text NOT NULL,
    last_key jsonb,
    max_key jsonb,
    rows_done bigint NOT NULL DEFAULT 0,
    rows_total bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    batch_size integer NOT NULL,
    finished boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, step_id),
    FOREIGN KEY (job_id, step_id) REFERENCES pgonline.steps (job_id, step_id) ON DELETE CASCADE
);
"""


@dataclass(frozen=True)
class Job:
    id: int
    kind: str
    target: str
    fingerprint: str
    plan: Plan
    phase: str | None
    status: JobStatus
    request: Request | None
    error: str | None
    hint: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class StepRecord:
    step_id: str
    ord: int
    status: StepStatus
    attempts: int
    error: str | None


@dataclass(frozen=True)
class Checkpoint:
    last_key: list[str] | None
    max_key: list[str] | None
    rows_done: int
    rows_total: int
    batches: int
    batch_size: int
    finished: bool


async def ensure_schema(conn: Conn) -> None:
    """Create the journal schema once; concurrent first runs serialize on an advisory lock."""
    cur = await conn.execute("SELECT to_regclass('pgonline.checkpoints') IS NOT NULL")
    row = await cur.fetchone()
    if row and row[0]:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s::int, 0)", [LOCK_NAMESPACE])
        await conn.execute(_DDL)
        await conn.execute(
            "INSERT INTO pgonline.meta VALUES ('schema_version', %s) ON CONFLICT DO NOTHING",
            [str(SCHEMA_VERSION)],
        )


def _job(row: dict[str, Any]) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        target=row["target"],
        fingerprint=row["fingerprint"],
        plan=Plan.from_dict(row["plan"]),
        phase=row["phase"],
        status=JobStatus(row["status"]),
        request=Request(row["request"]) if row["request"] else None,
        error=row["error"],
        hint=row["hint"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
    )


async def create_job(conn: Conn, plan: Plan, phase: str | None = None) -> int:
    async with conn.transaction():
        cur = await conn.execute(
            """
            INSERT INTO pgonline.jobs (kind, target, fingerprint, plan, phase, status)
            VALUES (%s, %s, %s, %s, %s, %s) RETURNING id
            """,
            [plan.kind, plan.target, plan.fingerprint, Jsonb(plan.to_dict()), phase,
             JobStatus.INTERRUPTED.value],
        )
        row = await cur.fetchone()
        assert row is not None
        job_id = int(row[0])
        async with conn.cursor() as c:
            await c.executemany(
                "INSERT INTO pgonline.steps (job_id, step_id, ord, status) VALUES (%s, %s, %s, %s)",
                [(job_id, s.id, i, StepStatus.PENDING.value) for i, s in enumerate(plan.steps)],
            )
    return job_id


async def find_unfinished(conn: Conn, fingerprint: str) -> Job | None:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT * FROM pgonline.jobs
             WHERE fingerprint = %s AND status NOT IN ('done', 'cancelled', 'rolled_back')
             ORDER BY id DESC LIMIT 1
            """,
            [fingerprint],
        )
        row = await cur.fetchone()
    return _job(row) if row else None


async def load_job(conn: Conn, job_id: int) -> Job:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT * FROM pgonline.jobs WHERE id = %s", [job_id])
        row = await cur.fetchone()
    if row is None:
        raise JobError(f"job {job_id} does not exist", hint="`online status` lists jobs")
    return _job(row)


async def list_jobs(conn: Conn, *, include_finished: bool = True, limit: int = 50) -> list[Job]:
    cur = await conn.execute("SELECT to_regclass('pgonline.jobs') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return []
    async with conn.cursor(row_factory=dict_row) as c:
        await c.execute(
            """SELECT * FROM pgonline.jobs
                WHERE %s OR status NOT IN ('done', 'cancelled', 'rolled_back')
                ORDER BY id DESC LIMIT %s""",
            [include_finished, limit],
        )
        return [_job(r) for r in await c.fetchall()]


async def steps(conn: Conn, job_id: int) -> dict[str, StepRecord]:
    cur = await conn.execute(
        """SELECT step_id, ord, status, attempts, error FROM pgonline.steps
             WHERE job_id = %s ORDER BY ord""",
        [job_id],
    )
    return {
        r[0]: StepRecord(r[0], r[1], StepStatus(r[2]), r[3], r[4]) for r in await cur.fetchall()
    }


async def set_step(conn: Conn, job_id: int, step_id: str, status: StepStatus,
                   error: str | None = None) -> None:
    """Record a step's status; call inside the step's own transaction where it has one."""
    await conn.execute(
        """
        UPDATE pgonline.steps
           SET status = %s, error = %s,
               attempts = attempts + (%s = 'running')::int,
               started_at = CASE WHEN %s = 'running' THEN coalesce(started_at, now())
                                 ELSE started_at END,
               finished_at = CASE WHEN %s IN ('done', 'undone') THEN now() ELSE NULL END
         WHERE job_id = %s AND step_id = %s
        """,
        [status.value, error, status.value, status.value, status.value, job_id, step_id],
    )


async def set_job(conn: Conn, job_id: int, status: JobStatus, *, error: str | None = None,
                  hint: str | None = None, clear_request: bool = False) -> None:
    await conn.execute(
        """
        UPDATE pgonline.jobs
           SET status = %s, error = %s, hint = %s, updated_at = now(),
               pid = CASE WHEN %s = 'running' THEN pg_backend_pid() END,
               request = CASE WHEN %s THEN NULL ELSE request END,
               finished_at = CASE WHEN %s IN ('done', 'cancelled', 'rolled_back') THEN now() END
         WHERE id = %s
        """,
        [status.value, error, hint, status.value, clear_request, status.value, job_id],
    )


async def set_phase(conn: Conn, job_id: int, phase: str | None) -> None:
    await conn.execute("UPDATE pgonline.jobs SET phase = %s WHERE id = %s", [phase, job_id])


async def request(conn: Conn, job_id: int, req: Request | None) -> None:
    await conn.execute(
        "UPDATE pgonline.jobs SET request = %s, updated_at = now() WHERE id = %s",
        [req.value if req else None, job_id],
    )


async def pending_request(conn: Conn, job_id: int) -> Request | None:
    cur = await conn.execute("SELECT request FROM pgonline.jobs WHERE id = %s", [job_id])
    row = await cur.fetchone()
    return Request(row[0]) if row and row[0] else None


async def load_checkpoint(conn: Conn, job_id: int, step_id: str) -> Checkpoint | None:
    cur = await conn.execute(
        """SELECT last_key, max_key, rows_done, rows_total, batches, batch_size, finished
              FROM pgonline.checkpoints WHERE job_id = %s AND step_id = %s""",
        [job_id, step_id],
    )
    row = await cur.fetchone()
    return Checkpoint(*row) if row else None


async def save_checkpoint(conn: Conn, job_id: int, step_id: str, cp: Checkpoint) -> None:
    """Upsert a checkpoint; called in the same transaction as the batch it describes."""
    await conn.execute(
        """
        INSERT INTO pgonline.checkpoints AS c
               (job_id, step_id, last_key, max_key, rows_done, rows_total, batches,
                batch_size, finished, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (job_id, step_id) DO UPDATE
           SET last_key = excluded.last_key, max_key = excluded.max_key,
               rows_done = excluded.rows_done, rows_total = excluded.rows_total,
               batches = excluded.batches, batch_size = excluded.batch_size,
               finished = excluded.finished, updated_at = now()
        """,
        [job_id, step_id,
         None if cp.last_key is None else Jsonb(cp.last_key),
         None if cp.max_key is None else Jsonb(cp.max_key),
         cp.rows_done, cp.rows_total, cp.batches, cp.batch_size, cp.finished],
    )


async def try_lock_job(conn: Conn, job_id: int) -> bool:
    """Take the session-level advisory lock that says "this process runs job N"."""
    cur = await conn.execute("SELECT pg_try_advisory_lock(%s::int, %s::int)", [LOCK_NAMESPACE, job_id])
    row = await cur.fetchone()
    return bool(row and row[0])


async def runner(conn: Conn, job_id: int) -> tuple[JobStatus, int | None]:
    """The job's status and the backend pid of the runner that last set it running."""
    cur = await conn.execute("SELECT status, pid FROM pgonline.jobs WHERE id = %s", [job_id])
    row = await cur.fetchone()
    if row is None:
        raise JobError(f"job {job_id} does not exist", hint="`online status` lists jobs")
    return JobStatus(row[0]), row[1]


async def job_is_locked(conn: Conn, job_id: int) -> bool:
    """True while some session (a live runner) holds job N's advisory lock."""
    cur = await conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_locks
                           WHERE locktype = 'advisory' AND classid = %s AND objid = %s
                             AND granted)""",
        [LOCK_NAMESPACE, job_id],
    )
    row = await cur.fetchone()
    return bool(row and row[0])


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
