"""Job control from another terminal: `online jobs`, `online pause`, `online cancel`."""

from __future__ import annotations

import time

import anyio
import psycopg
import pytest

from pgonline.connection import connect
from pgonline.engine import journal
from pgonline.engine.executor import ExecOptions, Executor
from pgonline.engine.journal import Request
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.engine.progress import Progress
from pgonline.errors import JobPaused
from tests.conftest import spawn_online
from tests.support.tables import create_users, schema_snapshot

ROWS = 4000
SLOW = ["add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
        "--batch-size", "50", "--min-batch-size", "50", "--max-batch-size", "50",
        "--sleep-ms", "40"]


def _rows_done(db: psycopg.Connection) -> int:  # type: ignore[type-arg]
    if db.execute("SELECT to_regclass('pgonline.checkpoints')").fetchone() == (None,):
        return 0
    row = db.execute("SELECT coalesce(sum(rows_done), 0) FROM pgonline.checkpoints").fetchone()
    return int(row[0]) if row else 0


def _wait_for_progress(db, proc, minimum: int = 200) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while _rows_done(db) < minimum:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "backfill made no progress"
        time.sleep(0.1)


def test_pause_from_another_terminal_then_resume_fills_every_row(db, dsn, online):
    create_users(db, ROWS)
    proc = spawn_online(SLOW, dsn)
    try:
        _wait_for_progress(db, proc)
        listing = online("jobs")
        assert listing.code == 0 and "add-column" in listing.out and "running" in listing.out
        r = online("pause", "1")
        assert r.code == 0, r.err
        assert "job 1 paused" in r.out and "online resume 1" in r.out
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "paused on request" in err and "online resume 1" in err
    done = _rows_done(db)
    assert 0 < done < ROWS
    assert db.execute("SELECT status, request FROM pgonline.jobs").fetchone() == ("paused", None)
    # Rows past the checkpoint are untouched; rows before it are filled.
    assert db.execute("SELECT count(*) FROM users WHERE t IS NOT NULL").fetchone() == (done,)

    r = online("resume", "1")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*), count(t), count(DISTINCT t) FROM users").fetchone() == \
        (ROWS, ROWS, ROWS)
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("done",)


def test_cancel_from_another_terminal_leaves_the_table_consistent_and_says_how_to_roll_back(
        db, dsn, online):
    create_users(db, ROWS)
    before = schema_snapshot(db)
    proc = spawn_online(SLOW, dsn)
    try:
        _wait_for_progress(db, proc)
        r = online("cancel", "1")
        assert r.code == 0, r.err
        assert "job 1 cancelled" in r.out and "online rollback 1" in r.out
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 6, err
    assert "cancelled on request" in err and "online rollback 1" in err
    status, hint = db.execute("SELECT status, hint FROM pgonline.jobs").fetchone()  # type: ignore[misc]
    assert status == "cancelled" and "online rollback 1" in hint
    # Consistent: the new column exists, the backfill stopped on a batch boundary.
    assert db.execute("SELECT count(*) FROM users WHERE t IS NOT NULL").fetchone() == \
        (_rows_done(db),)
    assert online("resume", "1").code == 6  # a cancelled job is final
    # Its half-filled column still needs a decision: listed, with the way out.
    listing = online("jobs").out
    assert "cancelled" in listing and "`online rollback 1` undoes them" in listing
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before
    assert online("jobs").out.startswith("no active jobs")


def test_cancel_of_a_job_nobody_runs_takes_effect_at_once(db, online):
    create_users(db, 100)
    assert online(*SLOW, "--phase", "expand").code == 0
    assert "paused" in online("jobs").out
    r = online("pause", "1")
    assert r.code == 0 and "not running" in r.out
    r = online("cancel", "1")
    assert r.code == 0 and "job 1 cancelled (it was paused)" in r.out
    # Its expand step stays in place until rolled back: listed with that hint.
    assert "`online rollback 1` undoes them" in online("jobs").out
    assert "cancelled" in online("jobs", "--all").out
    r = online("pause", "1")
    assert r.code == 6 and "job 1 is cancelled; nothing to pause" in r.err


def test_job_control_of_an_unknown_job_is_a_clear_error(online):
    r = online("cancel", "42")
    assert r.code == 6 and "job 42 does not exist" in r.err and "hint:" in r.err


def test_executor_honours_a_pause_request_between_ddl_steps(db, dsn):
    """A request made during step 1 stops the job before step 2; resume finishes it."""
    plan = Plan("test-steps", '"public"."t"', {}, (
        Step(id="one", phase=Phase.EXPAND, description="slow", lock=LockLevel.ACCESS_EXCLUSIVE,
             sql="CREATE TABLE t (a int); SELECT pg_sleep(1)"),
        Step(id="two", phase=Phase.EXPAND, description="second", lock=LockLevel.ACCESS_EXCLUSIVE,
             sql="ALTER TABLE t ADD COLUMN b int"),
    ))

    async def scenario() -> None:
        async def request_pause() -> None:
            ctl = await connect(dsn)
            try:
                # As soon as the runner has marked the job running (step one is under way).
                while True:
                    cur = await ctl.execute("SELECT to_regclass('pgonline.jobs') IS NOT NULL")
                    if (await cur.fetchone()) == (True,):
                        cur = await ctl.execute("SELECT status FROM pgonline.jobs WHERE id = 1")
                        if (await cur.fetchone()) == ("running",):
                            break
                    await anyio.sleep(0.05)
                await journal.request(ctl, 1, Request.PAUSE)
            finally:
                await ctl.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(request_pause)
            with pytest.raises(JobPaused):
                await Executor(dsn, ExecOptions(), Progress(bar=False)).run(plan)

    anyio.run(scenario)
    assert db.execute("SELECT step_id, status FROM pgonline.steps ORDER BY ord").fetchall() == \
        [("one", "done"), ("two", "pending")]
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("paused",)

    result = anyio.run(lambda: Executor(dsn, ExecOptions(), Progress(bar=False)).run(job_id=1))
    assert result.steps_run == ("two",)
    assert db.execute("SELECT count(*) FROM information_schema.columns "
                      "WHERE table_name = 't'").fetchone() == (2,)
