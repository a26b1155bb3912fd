"""One job per change, enforced by the database (issue #9, item 4).

Two identical commands started at the same instant: exactly one runs, the
other exits 6 and creates no job.  The start barrier is a lock held in the
database: the test holds ACCESS EXCLUSIVE on ``pgonline.meta`` and
``pgonline.jobs``, one of which every change command reads before it decides
whether a job exists (the journal's version, or the jobs themselves in
pgonline <= 0.1, so the test also shows the race there), so all processes of a
batch queue on them; once every one of them is waiting, the locks are
released and they all go at once.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import anyio
import psycopg
import pytest
from psycopg.types.json import Jsonb

from pgonline.engine import journal
from pgonline.engine.journal import JobStatus
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import JobError
from tests.conftest import spawn_online
from tests.support.tables import create_users

PAIRS = 20
BATCH = 10  # pairs released together (each pair on its own table)
ROWS = 50

# Every change kind; ``{t}`` is the pair's own table.
COMMANDS: dict[str, list[str]] = {
    "backfill": ["backfill", "{t}", "--set", "hits = hits + 1"],
    "add-column": ["add-column", "{t}", "extra", "integer", "--default", "7"],
    "add-index": ["add-index", "{t}", "email"],
    "drop-index": ["drop-index", "{t}_email_idx"],
    "set-not-null": ["set-not-null", "{t}", "email"],
    "add-check": ["add-check", "{t}", "{t}_hits_nonneg", "hits >= 0"],
    "add-foreign-key": ["add-foreign-key", "{t}", "org_id", "--references", "orgs"],
    "add-unique": ["add-unique", "{t}", "email"],
    "add-primary-key": ["add-primary-key", "{t}", "id"],
    "change-type": ["change-type", "{t}", "hits", "bigint"],
    "rename-column": ["rename-column", "{t}", "email", "mail"],
    "drop-column": ["drop-column", "{t}", "email", "--confirm"],
}
# What a pair's table needs before its command can run.
SETUP: dict[str, str] = {
    "drop-index": "CREATE INDEX {t}_email_idx ON {t} (email)",
    "add-foreign-key": "CREATE TABLE IF NOT EXISTS orgs (id bigint PRIMARY KEY);"
                       " INSERT INTO orgs VALUES (1) ON CONFLICT DO NOTHING;"
                       " ALTER TABLE {t} ADD COLUMN org_id bigint DEFAULT 1",
    "add-primary-key": "ALTER TABLE {t} DROP CONSTRAINT {t}_pkey",
}


def _init_journal(dsn: str) -> None:
    async def go() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        async with conn:
            await journal.ensure_schema(conn)

    anyio.run(go)


BARRIER = "LOCK TABLE pgonline.meta, pgonline.jobs IN ACCESS EXCLUSIVE MODE"


def _release_together(db: psycopg.Connection[Any], procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every process queues on the barrier lock, then release it."""
    deadline = time.monotonic() + 120
    while True:
        row = db.execute(
            """SELECT count(*) FROM pg_locks
                WHERE relation IN ('pgonline.meta'::regclass, 'pgonline.jobs'::regclass)
                  AND NOT granted""").fetchone()
        if row and row[0] == len(procs):
            return
        for p in procs:
            assert p.poll() is None, p.communicate()
        assert time.monotonic() < deadline, "the processes never reached the barrier"
        time.sleep(0.05)


@pytest.mark.parametrize("kind", sorted(COMMANDS))
def test_of_two_identical_commands_started_at_once_exactly_one_runs(db, dsn, kind):
    tables = [f"t{i}" for i in range(PAIRS)]
    for t in tables:
        create_users(db, ROWS, table=t)
        if kind in SETUP:
            db.execute(SETUP[kind].format(t=t))
    _init_journal(dsn)
    for first in range(0, PAIRS, BATCH):
        batch = tables[first:first + BATCH]
        with psycopg.connect(dsn) as barrier:
            barrier.execute(BARRIER)
            procs = {t: [spawn_online([a.format(t=t) for a in COMMANDS[kind]], dsn)
                         for _ in range(2)] for t in batch}
            try:
                _release_together(db, [p for pair in procs.values() for p in pair])
            finally:
                barrier.commit()
        for t, pair in procs.items():
            results = [(p.wait(timeout=120), *p.communicate()) for p in pair]
            codes = sorted(r[0] for r in results)
            assert codes == [0, 6], (t, results)
            loser = next(r for r in results if r[0] == 6)
            assert "job " in loser[2], loser  # the message names the other job
    jobs = db.execute("SELECT target, count(*), min(status) FROM pgonline.jobs "
                      "GROUP BY target ORDER BY target").fetchall()
    # A rename stops before its cut-over (gated): the winner's job waits there.
    status = "paused" if kind == "rename-column" else "done"
    assert sorted(jobs) == sorted((f'"public"."{t}"', 1, status) for t in tables)
    if kind == "backfill":
        for t in tables:
            assert db.execute(f"SELECT min(hits), max(hits) FROM {t}").fetchone() == (1, 1)  # noqa: S608


def test_a_second_command_on_a_table_with_an_unfinished_job_names_that_job(db, online):
    create_users(db, ROWS, table="users")
    assert online("add-column", "users", "extra", "integer", "--backfill", "1",
                  "--phase", "expand").code == 0
    r = online("add-index", "public.users", "email")
    assert r.code == 6
    assert "job 1 (add-column on \"public\".\"users\", paused)" in r.err
    assert "online rollback 1" in r.err
    assert db.execute("SELECT count(*) FROM pgonline.jobs").fetchone() == (1,)
    # The same command again still resumes its own job.
    assert online("add-column", "users", "extra", "integer", "--backfill", "1").code == 0
    assert online("add-index", "users", "email").code == 0


def _plan(step_id: str) -> Plan:
    return Plan("add-index", '"public"."users"', {"n": step_id}, (Step(
        id=step_id, phase=Phase.EXPAND, description="x", lock=LockLevel.NONE, sql="SELECT 1"),))


def test_the_unique_index_refuses_a_second_unfinished_job_on_the_same_table(db, dsn):
    create_users(db, 1, table="users")

    async def go() -> None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        async with conn:
            await journal.ensure_schema(conn)
            first = await journal.create_job(conn, _plan("a"))
            with pytest.raises(JobError, match=f"job {first} \\(add-index on"):
                await journal.create_job(conn, _plan("b"))
            await journal.set_job(conn, first, JobStatus.DONE)
            await journal.create_job(conn, _plan("c"))  # a finished job frees the table

    anyio.run(go)
    assert db.execute("SELECT count(*) FROM pgonline.steps").fetchone() == (2,)


_V1_DDL = journal._DDL  # the version 1 schema is the base DDL without the migration


def test_a_version_1_journal_with_duplicate_unfinished_jobs_upgrades_in_place(db, dsn):
    create_users(db, 1, table="users")
    db.execute(_V1_DDL)
    db.execute("INSERT INTO pgonline.meta VALUES ('schema_version', '1')")
    for status in ("paused", "failed", "done"):
        db.execute("INSERT INTO pgonline.jobs (kind, target, fingerprint, plan, status) "
                   "VALUES ('add-index', '\"public\".\"users\"', 'f', %s, %s)",
                   [Jsonb(_plan("a").to_dict()), status])

    async def go() -> None:
        async with anyio.create_task_group() as tg:  # two processes upgrading at once
            for _ in range(2):
                tg.start_soon(_ensure, dsn)

    anyio.run(go)
    # Upgraded in place, through version 2 (the index below) to today's version.
    assert db.execute("SELECT value FROM pgonline.meta").fetchone() == (
        str(journal.SCHEMA_VERSION),)
    # The newest unfinished job holds the table; the older duplicate is left as it is.
    assert db.execute("SELECT id, target_oid IS NOT NULL FROM pgonline.jobs ORDER BY id"
                      ).fetchall() == [(1, False), (2, True), (3, False)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO pgonline.jobs (kind, target, target_oid, fingerprint, plan, "
                   "status) VALUES ('x', 'x', 'users'::regclass, 'g', '{}', 'paused')")


async def _ensure(dsn: str) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    async with conn:
        await journal.ensure_schema(conn)


def test_two_processes_resuming_one_interrupted_job_exactly_one_wins(db, dsn, online):
    create_users(db, ROWS, table="users")
    assert online("add-column", "users", "extra", "integer", "--backfill", "hits",
                  "--phase", "expand").code == 0
    db.execute("UPDATE pgonline.jobs SET status = 'interrupted'")
    with psycopg.connect(dsn) as barrier:
        barrier.execute(BARRIER)
        args = ["add-column", "users", "extra", "integer", "--backfill", "hits"]
        procs = [spawn_online(args, dsn) for _ in range(2)]
        try:
            _release_together(db, procs)
        finally:
            barrier.commit()
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert sorted(r[0] for r in results) == [0, 6], results
    assert db.execute("SELECT id, status FROM pgonline.jobs").fetchall() == [(1, "done")]
