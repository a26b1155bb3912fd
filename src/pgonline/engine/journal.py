"""The journal: jobs, steps and backfill checkpoints, stored in the target database.

Keeping the journal in the same database as the change is what makes resume
exact: a DDL step and the row saying "step done" commit in one transaction,
and so do a backfill batch and its checkpoint.  After a crash the journal can
therefore never claim more (or less) than what the database actually holds.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import anyio
import psycopg
import structlog
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from pgonline.connection import Conn
from pgonline.engine.plan import Plan
from pgonline.errors import JobError

log = structlog.get_logger("pgonline.engine.journal")

SCHEMA = "pgonline"
# 1: jobs, steps, checkpoints.  2: jobs.target_oid and the unique index that
# allows one unfinished job per table (see _MIGRATE_TO_2).  3: what
# `online status` shows and `online set/throttle` steers (see _MIGRATE_TO_3).
# 4: a backfill's key range in parts, one checkpoint each (see _MIGRATE_TO_4).
SCHEMA_VERSION = 4
# Advisory lock key space: (namespace, job id).  The namespace is a constant so
# other applications' advisory locks cannot collide with ours by accident.
# (LOCK_NAMESPACE, 0) serializes creating and migrating the journal schema.
LOCK_NAMESPACE = 0x70676F  # "pgo"
# (TABLE_LOCK_NAMESPACE, table OID): held by a process from before it looks
# for an unfinished job on the table until its own job row exists and is
# locked, so two processes can never both decide "no job yet, create one".
TABLE_LOCK_NAMESPACE = 0x706770  # "pgp"


class JobStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    # Backfill done, cut-over (contract) postponed until `online resume` (--postpone-contract).
    WAITING = "waiting_cutover"
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
    # Rolled back by running the step's undo SQL.
    UNDONE = "undone"
    # Rolled back, but the step had nothing of its own to reverse (a VALIDATE,
    # a backfill of a column that an undone step dropped, ...).
    NO_UNDO = "no_undo"


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

# Version 3: for `online status` and live control.
# * runner_pid / runner_host: the client process running the job (jobs.pid is
#   its server backend);
# * settings: what `online set` changed, applied by the runner within one batch
#   and again by any later runner of the job; settings_rev counts the changes
#   and settings_seen the ones a runner has applied;
# * throttled / throttle_until: `online throttle` (until then; NULL: until
#   `online unthrottle`);
# * throttled_by: why the backfill waits right now, written when it starts and
#   ends waiting (not on every poll);
# * checkpoints.rows_per_s: the backfill's rate over its last minute.
# Every column is nullable or has a default: a runner of version 2 keeps working.
_MIGRATE_TO_3 = """
ALTER TABLE pgonline.jobs ADD COLUMN IF NOT EXISTS runner_pid integer,
                          ADD COLUMN IF NOT EXISTS runner_host text,
                          ADD COLUMN IF NOT EXISTS settings jsonb NOT NULL DEFAULT '{}',
                          ADD COLUMN IF NOT EXISTS settings_rev integer NOT NULL DEFAULT 0,
                          ADD COLUMN IF NOT EXISTS settings_seen integer NOT NULL DEFAULT 0,
                          ADD COLUMN IF NOT EXISTS throttled boolean NOT NULL DEFAULT false,
                          ADD COLUMN IF NOT EXISTS throttle_until timestamptz,
                          ADD COLUMN IF NOT EXISTS throttled_by text;
ALTER TABLE pgonline.checkpoints ADD COLUMN IF NOT EXISTS rows_per_s double precision;
"""

# Version 4: `--workers N` walks N disjoint parts of a backfill's range at once,
# each committing its own checkpoint row (one row for all would make every
# batch wait for the others' row lock).  A step's existing checkpoint becomes
# its part 0, which is exactly what it was: the whole range.  A runner of
# version 3 cannot write this table any more (its ON CONFLICT names the old
# key): it stops at its first checkpoint, before the batch commits, and the
# job is resumable by this version.
_MIGRATE_TO_4 = """
ALTER TABLE pgonline.checkpoints ADD COLUMN IF NOT EXISTS part integer NOT NULL DEFAULT 0;
ALTER TABLE pgonline.checkpoints DROP CONSTRAINT checkpoints_pkey,
                                 ADD CONSTRAINT checkpoints_pkey PRIMARY KEY (job_id, step_id, part);
"""

# Version 2.  A journal written by version 1 may already hold two unfinished
# jobs on one table (the race this index closes); then only the newest gets
# its target_oid, the older ones keep NULL, which the unique index does not
# cover: they stay resumable as they are and are reported once (warning).
_MIGRATE_TO_2 = """
ALTER TABLE pgonline.jobs ADD COLUMN IF NOT EXISTS target_oid oid;
WITH unfinished AS (
    SELECT id, to_regclass(target)::oid AS rel,
           row_number() OVER (PARTITION BY to_regclass(target)::oid ORDER BY id DESC) AS n
      FROM pgonline.jobs
     WHERE status NOT IN ('done', 'cancelled', 'rolled_back') AND target_oid IS NULL
)
UPDATE pgonline.jobs j SET target_oid = u.rel
  FROM unfinished u
 WHERE j.id = u.id AND u.n = 1 AND u.rel IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM pgonline.jobs o
                    WHERE o.target_oid = u.rel AND o.status NOT IN ('done', 'cancelled', 'rolled_back'));
CREATE UNIQUE INDEX IF NOT EXISTS jobs_one_unfinished_per_table
    ON pgonline.jobs (target_oid) WHERE status NOT IN ('done', 'cancelled', 'rolled_back');
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
    # Version 3 (None/empty when read from an older journal).
    runner_pid: int | None = None
    runner_host: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    settings_rev: int = 0
    throttle_until: datetime | None = None
    throttled_by: str | None = None


@dataclass(frozen=True)
class StepRecord:
    step_id: str
    ord: int
    status: StepStatus
    attempts: int
    error: str | None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Checkpoint:
    last_key: list[str] | None
    max_key: list[str] | None
    rows_done: int
    rows_total: int
    batches: int
    batch_size: int
    finished: bool
    rows_per_s: float | None = None  # over the last minute (version 3)
    updated_at: datetime | None = None  # read back only: when the last batch committed
    # Which part of the step's range (version 4): 0 for a walk in one part.
    part: int = 0


async def schema_version(conn: Conn) -> int | None:
    """The journal's schema version, or None when there is no journal in this database."""
    cur = await conn.execute("SELECT to_regclass('pgonline.checkpoints') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return None
    cur = await conn.execute("SELECT value FROM pgonline.meta WHERE key = 'schema_version'")
    row = await cur.fetchone()
    return int(row[0]) if row else 1


async def ensure_schema(conn: Conn) -> None:
    """Create the journal schema, or migrate an older one in place, to SCHEMA_VERSION.

    Concurrent first runs (or upgrades) serialize on an advisory lock and
    re-read the version under it, so exactly one of them changes anything.
    """
    version = await schema_version(conn)
    if version == SCHEMA_VERSION:
        return
    _refuse_newer(version)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s::int, 0)", [LOCK_NAMESPACE])
        version = await schema_version(conn)
        _refuse_newer(version)
        if version == SCHEMA_VERSION:
            return
        if version is None:
            await conn.execute(_DDL)
        for first, migration in ((2, _MIGRATE_TO_2), (3, _MIGRATE_TO_3), (4, _MIGRATE_TO_4)):
            if version is None or version < first:
                await conn.execute(migration)
        await conn.execute(
            """INSERT INTO pgonline.meta VALUES ('schema_version', %s)
               ON CONFLICT (key) DO UPDATE SET value = excluded.value""",
            [str(SCHEMA_VERSION)],
        )
        cur = await conn.execute(
            """SELECT array_agg(id ORDER BY id) FROM pgonline.jobs
                 WHERE status NOT IN ('done', 'cancelled', 'rolled_back') AND target_oid IS NULL""")
        row = await cur.fetchone()
        if version is not None and row and row[0]:
            log.warning("journal upgraded; these unfinished jobs share a table with a newer "
                        "unfinished job and are not covered by the one-job-per-table index",
                        jobs=list(row[0]))


def _refuse_newer(version: int | None) -> None:
    """A journal written by a newer pgonline may hold what this one cannot read or keep."""
    if version is not None and version > SCHEMA_VERSION:
        raise JobError(
            f"the journal in this database (schema pgonline) is version {version}, newer than "
            f"this pgonline knows ({SCHEMA_VERSION})",
            hint="run the pgonline version that wrote it, or a newer one")


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
        runner_pid=row.get("runner_pid"),
        runner_host=row.get("runner_host"),
        settings=dict(row.get("settings") or {}),
        settings_rev=int(row.get("settings_rev") or 0),
        throttle_until=row.get("throttle_until"),
        throttled_by=row.get("throttled_by"),
    )


def _job_label(job: Job) -> str:
    return f"job {job.id} ({job.kind} on {job.target}, {job.status})"


def other_job_error(job: Job, locked: bool) -> JobError:
    """The refusal to start a second job on a table that has an unfinished one."""
    if locked:
        return JobError(f"{_job_label(job)} is running on this table; one unfinished "
                        "pgonline job per table", hint="wait for it (`online status`)")
    return JobError(f"{_job_label(job)} is unfinished on this table; one unfinished "
                    "pgonline job per table",
                    hint=f"finish it with `online resume {job.id}`, undo it with "
                         f"`online rollback {job.id}`, or abandon it with `online cancel {job.id}`")


async def create_job(conn: Conn, plan: Plan, phase: str | None = None) -> int:
    """Insert a job and its steps; JobError (nothing created) if the table has an unfinished job.

    The unique index over unfinished jobs per table OID is the backstop for
    any caller that did not take the table lock first.
    """
    try:
        async with conn.transaction():
            cur = await conn.execute(
                """
                INSERT INTO pgonline.jobs (kind, target, target_oid, fingerprint, plan, phase,
                                           status)
                VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id
                """,
                [plan.kind, plan.target, await relation_oid(conn, plan.target),
                 plan.fingerprint, Jsonb(plan.to_dict()), phase, JobStatus.INTERRUPTED.value],
            )
            row = await cur.fetchone()
            assert row is not None
            job_id = int(row[0])
            async with conn.cursor() as c:
                await c.executemany(
                    "INSERT INTO pgonline.steps (job_id, step_id, ord, status) "
                    "VALUES (%s, %s, %s, %s)",
                    [(job_id, s.id, i, StepStatus.PENDING.value)
                     for i, s in enumerate(plan.steps)],
                )
    except psycopg.errors.UniqueViolation:
        oid = await relation_oid(conn, plan.target)
        other = None if oid is None else await find_unfinished_on(conn, oid)
        if other is None:  # pragma: no cover - it finished between the INSERT and now
            raise JobError(f"another job on {plan.target} was created at the same time",
                           hint="`online status` lists jobs") from None
        raise other_job_error(other, await job_is_locked(conn, other.id)) from None
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


async def latest_of_command(conn: Conn, kind: str, args: dict[str, Any]) -> Job | None:
    """The newest job of ``kind`` with exactly these arguments, whatever its target or status.

    For a command whose arguments name what it changes (drop-index names the
    index) while its job is keyed by the table: once the index is gone, this
    is how the command finds the table its own earlier (or concurrent) run
    was journaled under.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM pgonline.jobs WHERE kind = %s AND plan -> 'args' = %s"
            " ORDER BY id DESC LIMIT 1",
            [kind, Jsonb(args)],
        )
        row = await cur.fetchone()
    return _job(row) if row else None


async def started_since(conn: Conn, fingerprint: str, since: datetime) -> Job | None:
    """A job of the very same command created at or after ``since`` (server clock)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT * FROM pgonline.jobs WHERE fingerprint = %s AND created_at >= %s"
            " ORDER BY id DESC LIMIT 1",
            [fingerprint, since],
        )
        row = await cur.fetchone()
    return _job(row) if row else None


async def find_unfinished_on(conn: Conn, table_oid: int) -> Job | None:
    """The unfinished job holding table ``table_oid``: its target (at most one, by the
    unique index), or another table it changes too (a change-type --with-references
    converts the referencing tables: its plan's steps name them)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT * FROM pgonline.jobs j
                 WHERE status NOT IN ('done', 'cancelled', 'rolled_back')
                   AND (target_oid = %(oid)s OR EXISTS (
                        SELECT 1 FROM jsonb_array_elements(j.plan->'steps') s
                         CROSS JOIN LATERAL jsonb_array_elements_text(
                               coalesce(s->'tables', '[]') || jsonb_build_array(
                                   quote_ident(s->'backfill'->>'schema') || '.'
                                   || quote_ident(s->'backfill'->>'table'))) t(name)
                         WHERE t.name IS NOT NULL AND to_regclass(t.name) = %(oid)s::oid))
                 ORDER BY (target_oid = %(oid)s) IS TRUE DESC, id DESC LIMIT 1""",
            {"oid": table_oid},
        )
        row = await cur.fetchone()
    return _job(row) if row else None


async def relation_oid(conn: Conn, name: str) -> int | None:
    """The OID of the table ``name`` (quoted text) designates; an index stands for its table.

    Jobs are keyed by OID, not text: ``users`` and ``public.users`` are one
    table, and the OID survives a rename.  None when there is no such relation.
    """
    cur = await conn.execute(
        """SELECT coalesce((SELECT indrelid FROM pg_index WHERE indexrelid = r.oid), r.oid)
             FROM (SELECT to_regclass(%s)::oid AS oid) r""",
        [name],
    )
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


class TableLock:
    """The table's advisory lock as held by :func:`table_lock`."""

    def __init__(self, conn: Conn, table_oid: int) -> None:
        self._conn = conn
        self._args = [TABLE_LOCK_NAMESPACE, table_oid]
        self._held = False
        # When our first attempt found the lock taken (None: it was free).
        # Another process was then between its twin lookup and its job lock.
        self.contended_since: datetime | None = None

    async def acquire(self, wait_s: float, poll_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while True:
            cur = await self._conn.execute(
                "SELECT pg_try_advisory_lock(%s::int, %s::oid::int), statement_timestamp()",
                self._args)
            row = await cur.fetchone()
            assert row is not None
            if row[0]:
                self._held = True
                return
            if self.contended_since is None:
                self.contended_since = row[1]
            if time.monotonic() >= deadline:
                cur = await self._conn.execute(
                    """SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted
                          AND classid = %s AND objid = %s::oid AND objsubid = 2
                          AND database = (SELECT oid FROM pg_database
                                           WHERE datname = current_database()) LIMIT 1""",
                    self._args)
                holder = await cur.fetchone()
                who = f" (pid {holder[0]})" if holder else ""
                raise JobError(f"another pgonline process{who} is starting a job on this table",
                               hint="retry when it has started; `online status` will list it")
            await anyio.sleep(poll_s)

    async def release(self) -> None:
        """Idempotent; the runner calls it once its job row is locked."""
        if self._held:
            self._held = False
            await self._conn.execute("SELECT pg_advisory_unlock(%s::int, %s::oid::int)",
                                     self._args)


@asynccontextmanager
async def table_lock(conn: Conn, table_oid: int, *, wait_s: float,
                     poll_s: float = 0.05) -> AsyncIterator[TableLock]:
    """Hold the table's advisory lock on ``conn`` (released on exit at the latest).

    Polled with ``pg_try_advisory_lock`` rather than queued, so waiting never
    depends on the session's lock_timeout and gives up after ``wait_s`` with
    a message naming the process that holds it.
    """
    lock = TableLock(conn, table_oid)
    await lock.acquire(wait_s, poll_s)
    try:
        yield lock
    finally:
        with anyio.CancelScope(shield=True):
            if not conn.closed:
                await lock.release()


async def active_since(conn: Conn, table_oid: int, kind: str, since: datetime) -> Job | None:
    """A ``kind`` job on the table that was unfinished at some moment since ``since``."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """SELECT * FROM pgonline.jobs
                WHERE target_oid = %s AND kind = %s
                  AND (finished_at IS NULL OR finished_at >= %s)
                ORDER BY id DESC LIMIT 1""",
            [table_oid, kind, since],
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
        # A cancelled job that left completed steps in place (a half-filled
        # column, say) still needs a decision: it is listed until rolled back.
        await c.execute(
            """SELECT * FROM pgonline.jobs j
                WHERE %s OR status NOT IN ('done', 'cancelled', 'rolled_back')
                   OR (status = 'cancelled' AND EXISTS (
                        SELECT 1 FROM pgonline.steps s
                         WHERE s.job_id = j.id AND s.status IN ('done', 'running', 'failed')))
                ORDER BY id DESC LIMIT %s""",
            [include_finished, limit],
        )
        return [_job(r) for r in await c.fetchall()]


async def steps(conn: Conn, job_id: int) -> dict[str, StepRecord]:
    cur = await conn.execute(
        """SELECT step_id, ord, status, attempts, error, started_at, finished_at
             FROM pgonline.steps WHERE job_id = %s ORDER BY ord""",
        [job_id],
    )
    return {
        r[0]: StepRecord(r[0], r[1], StepStatus(r[2]), r[3], r[4], r[5], r[6])
        for r in await cur.fetchall()
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
               finished_at = CASE WHEN %s IN ('done', 'undone', 'no_undo') THEN now()
                                  ELSE NULL END
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
    await _set_runner(conn, job_id, running=status is JobStatus.RUNNING)


async def _set_runner(conn: Conn, job_id: int, *, running: bool) -> None:
    """A new runner records its process (kept afterwards: who ran it last); no stale reason."""
    if await schema_version(conn) != SCHEMA_VERSION:
        return  # an older journal, not upgraded by this command, has no such columns
    if running:
        await conn.execute(
            """UPDATE pgonline.jobs SET runner_pid = %s, runner_host = %s, throttled_by = NULL
                WHERE id = %s""", [os.getpid(), socket.gethostname(), job_id])
    else:
        await conn.execute("UPDATE pgonline.jobs SET throttled_by = NULL WHERE id = %s",
                           [job_id])


async def restore_status(conn: Conn, job_id: int, status: JobStatus, *, error: str | None,
                         hint: str | None) -> None:
    """Put a job back to ``status`` after a refused or stopped rollback.

    Unlike :func:`set_job` it keeps ``finished_at``: a finished job whose
    rollback stopped is still the finished job it was (never "failed"); its
    steps say which ones were undone.
    """
    await conn.execute(
        """UPDATE pgonline.jobs SET status = %s, error = %s, hint = %s, updated_at = now(),
                  pid = NULL, request = NULL WHERE id = %s""",
        [status.value, error, hint, job_id],
    )


async def request(conn: Conn, job_id: int, req: Request | None) -> None:
    await conn.execute(
        "UPDATE pgonline.jobs SET request = %s, updated_at = now() WHERE id = %s",
        [req.value if req else None, job_id],
    )


async def pending_request(conn: Conn, job_id: int) -> Request | None:
    cur = await conn.execute("SELECT request FROM pgonline.jobs WHERE id = %s", [job_id])
    row = await cur.fetchone()
    return Request(row[0]) if row and row[0] else None


@dataclass(frozen=True)
class Control:
    """What other terminals ask of a running job, read in one round trip between batches."""

    request: Request | None
    settings: dict[str, Any]
    settings_rev: int
    throttled_until: datetime | None  # `online throttle` in force until then (None: not)
    throttled_forever: bool


async def pending_control(conn: Conn, job_id: int) -> Control:
    cur = await conn.execute(_CONTROL, [job_id])
    return _control(await cur.fetchone(), job_id)


async def settings_seen(conn: Conn, job_id: int, rev: int) -> None:
    """The runner applied the settings up to revision ``rev``."""
    await conn.execute("UPDATE pgonline.jobs SET settings_seen = greatest(settings_seen, %s)"
                       " WHERE id = %s", [rev, job_id])


async def change_settings(conn: Conn, job_id: int, changes: dict[str, Any]) -> int:
    """Merge ``changes`` into the job's live settings; the new revision number."""
    cur = await conn.execute(
        """UPDATE pgonline.jobs SET settings = settings || %s, settings_rev = settings_rev + 1,
                  updated_at = now()
            WHERE id = %s RETURNING settings_rev""",
        [Jsonb(changes), job_id],
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def settings_applied(conn: Conn, job_id: int) -> int:
    cur = await conn.execute("SELECT settings_seen FROM pgonline.jobs WHERE id = %s", [job_id])
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def set_throttle(conn: Conn, job_id: int, for_s: float | None) -> datetime | None:
    """Hold the job's backfill for ``for_s`` seconds (None: until lifted); until when."""
    cur = await conn.execute(
        """UPDATE pgonline.jobs
              SET throttled = true,
                  throttle_until = now() + make_interval(secs => %s::float8),
                  updated_at = now()
            WHERE id = %s RETURNING throttle_until""",
        [for_s, job_id],
    )
    row = await cur.fetchone()
    assert row is not None
    until: datetime | None = row[0]
    return until


async def clear_throttle(conn: Conn, job_id: int) -> None:
    await conn.execute("UPDATE pgonline.jobs SET throttled = false, throttle_until = NULL,"
                       " updated_at = now() WHERE id = %s", [job_id])


async def set_throttled_by(conn: Conn, job_id: int, reason: str | None) -> None:
    """Why the backfill waits now (None: it runs); written when that changes."""
    await conn.execute("UPDATE pgonline.jobs SET throttled_by = %s WHERE id = %s",
                       [reason, job_id])


def _checkpoint(row: dict[str, Any]) -> Checkpoint:
    return Checkpoint(row["last_key"], row["max_key"], row["rows_done"], row["rows_total"],
                      row["batches"], row["batch_size"], row["finished"],
                      row.get("rows_per_s"), row["updated_at"], row.get("part", 0))


async def load_parts(conn: Conn, job_id: int, step_id: str) -> list[Checkpoint]:
    """A backfill step's checkpoints, one per part of its range, in part order ([]: not started)."""
    async with conn.cursor(row_factory=dict_row) as cur:
        # Sorted here: `online status` reads journals of older versions, which
        # have no part column, without upgrading them.
        await cur.execute("SELECT * FROM pgonline.checkpoints WHERE job_id = %s AND step_id = %s",
                          [job_id, step_id])
        return sorted((_checkpoint(row) for row in await cur.fetchall()), key=lambda c: c.part)


def combined(parts: list[Checkpoint]) -> Checkpoint:
    """One checkpoint for all parts of a step: what `online status` shows.

    Counts add up; the rate is the one the most recent batch saved (each part
    saves the whole step's rate, not its own share of it).
    """
    if len(parts) == 1:
        return parts[0]

    def when(p: Checkpoint) -> datetime:
        return p.updated_at or datetime.min.replace(tzinfo=UTC)

    latest = max(parts, key=when)
    running = [p for p in parts if not p.finished]
    return Checkpoint(
        last_key=None, max_key=None, rows_done=sum(p.rows_done for p in parts),
        rows_total=sum(max(p.rows_total, p.rows_done) for p in parts),
        batches=sum(p.batches for p in parts), batch_size=latest.batch_size,
        finished=not running,
        rows_per_s=max(running, key=when).rows_per_s if running else None,
        updated_at=latest.updated_at)


async def load_checkpoint(conn: Conn, job_id: int, step_id: str) -> Checkpoint | None:
    """The step's progress over all its parts (None: not started)."""
    parts = await load_parts(conn, job_id, step_id)
    return combined(parts) if parts else None


async def replace_parts(conn: Conn, job_id: int, step_id: str, parts: list[Checkpoint]) -> None:
    """Split (or re-split) a step's range: its checkpoints become ``parts``.

    In the caller's transaction, so the parts are written all or none: a
    crash never leaves a range covered by no part, or by two.
    """
    await conn.execute("DELETE FROM pgonline.checkpoints WHERE job_id = %s AND step_id = %s",
                       [job_id, step_id])
    for cp in parts:
        await save_checkpoint(conn, job_id, step_id, cp)


# The columns of the control row (see Control): read alone, or with every checkpoint.
_CONTROL_COLUMNS = sql.SQL("""request, settings, settings_rev,
       CASE WHEN throttled AND throttle_until > now() THEN throttle_until END,
       throttled AND throttle_until IS NULL""")
_CONTROL = sql.SQL("SELECT {} FROM pgonline.jobs WHERE id = %s").format(_CONTROL_COLUMNS)
_SAVE_CHECKPOINT = sql.SQL("""
    WITH saved AS (
        INSERT INTO pgonline.checkpoints AS c
               (job_id, step_id, part, last_key, max_key, rows_done, rows_total, batches,
                batch_size, finished, rows_per_s, updated_at)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
        ON CONFLICT (job_id, step_id, part) DO UPDATE
           SET last_key = excluded.last_key, max_key = excluded.max_key,
               rows_done = excluded.rows_done, rows_total = excluded.rows_total,
               batches = excluded.batches, batch_size = excluded.batch_size,
               finished = excluded.finished, rows_per_s = excluded.rows_per_s,
               updated_at = now()
        RETURNING 1
    )
    SELECT {} FROM pgonline.jobs, saved WHERE id = %s
""").format(_CONTROL_COLUMNS)


def _control(row: Any, job_id: int) -> Control:
    if row is None:
        raise JobError(f"job {job_id} does not exist")
    return Control(Request(row[0]) if row[0] else None, dict(row[1] or {}), int(row[2]),
                   None if row[4] else row[3], bool(row[4]))


async def save_checkpoint(conn: Conn, job_id: int, step_id: str, cp: Checkpoint) -> Control:
    """Upsert a checkpoint; called in the same transaction as the batch it describes.

    The same round trip reads what other terminals asked of the job since
    (pause, cancel, `online set`, `online throttle`), so every batch sees
    them without a query of its own.
    """
    cur = await conn.execute(
        _SAVE_CHECKPOINT,
        [job_id, step_id, cp.part,
         None if cp.last_key is None else Jsonb(cp.last_key),
         None if cp.max_key is None else Jsonb(cp.max_key),
         cp.rows_done, cp.rows_total, cp.batches, cp.batch_size, cp.finished, cp.rows_per_s,
         job_id],
    )
    return _control(await cur.fetchone(), job_id)


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
    """True while some session (a live runner) holds job N's advisory lock.

    In this database only: advisory locks are per database, and so are job
    ids (every database's journal has a job 1; fleet mode runs them side by
    side on one server).
    """
    cur = await conn.execute(
        """SELECT EXISTS (SELECT 1 FROM pg_locks
                           WHERE locktype = 'advisory' AND classid = %s AND objid = %s
                             AND granted AND database = (SELECT oid FROM pg_database
                                                          WHERE datname = current_database()))""",
        [LOCK_NAMESPACE, job_id],
    )
    row = await cur.fetchone()
    return bool(row and row[0])
