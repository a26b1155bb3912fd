"""A lost connection (terminated backend, server restart) does not end the job.

Each scenario runs ``online`` as a subprocess, ends its session on the server
mid-step and checks that the job reconnects, continues from its journal and
finishes correctly by itself; or, when the server stays down longer than
``--reconnect-timeout``, exits 5 resumably.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest

from pgonline.connection import connect
from pgonline.engine import journal
from pgonline.engine.executor import ExecOptions, Executor
from pgonline.engine.progress import Progress
from pgonline.engine.reconnect import JobTakenOver
from pgonline.engine.retry import is_connection_lost
from tests.conftest import spawn_online
from tests.support import servers
from tests.support.column_changes import wait_for_checkpoint
from tests.support.online_load import wait_for
from tests.support.tables import columns, create_users

ROWS = 4000
# Slow enough (~1.5 s of batches) to end the session mid-backfill.
SLOW = ["--batch-size", "200", "--min-batch-size", "200", "--max-batch-size", "200",
        "--sleep-ms", "50"]
# With a default, no step of the plan waits for the operator: the job runs to its end.
BACKFILL = ["add-column", "users", "domain", "text", "--backfill", "split_part(email, '@', 2)",
            "--default", "''", "--not-null"]
Db = psycopg.Connection[Any]


def _count_updates(db: Db) -> None:
    # Proof of "exactly once": every UPDATE of a row bumps its counter.
    db.execute("ALTER TABLE users ADD COLUMN touched int NOT NULL DEFAULT 0")
    db.execute("""CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS
                  $$BEGIN NEW.touched := OLD.touched + 1; RETURN NEW; END$$""")
    db.execute("CREATE TRIGGER count_update BEFORE UPDATE ON users "
               "FOR EACH ROW EXECUTE FUNCTION count_update()")


def _runner_pid(db: Db, job_id: int = 1) -> int:
    row = db.execute("SELECT pid FROM pgonline.jobs WHERE id = %s", [job_id]).fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


def _terminate(db: Db, pid: int) -> None:
    assert db.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)


def _wait_for_new_runner(db: Db, old_pid: int, timeout_s: float = 30) -> None:
    wait_for(db, f"SELECT pid IS DISTINCT FROM {int(old_pid)} AND pid IS NOT NULL"  # noqa: S608
                 " FROM pgonline.jobs WHERE id = 1", timeout_s)


def _finish(proc: subprocess.Popen[str], timeout_s: float = 60) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"online did not finish:\n{err}") from None
    return proc.returncode, err


def _assert_backfilled_exactly_once(db: Db) -> None:
    assert db.execute("SELECT count(*) FROM users WHERE domain IS DISTINCT FROM 'example.com'"
                      ).fetchone() == (0,)
    assert db.execute("SELECT min(touched), max(touched) FROM users").fetchone() == (1, 1)
    # The walk's own count did not double either: each row once, in total.
    assert db.execute("SELECT rows_done FROM pgonline.checkpoints").fetchone() == (ROWS,)
    assert columns(db, "users")["domain"][1] is True
    assert db.execute("SELECT id, status FROM pgonline.jobs").fetchall() == [(1, "done")]


@pytest.fixture
def local_server(pg_server: servers.TestServer) -> Iterator[Any]:
    if pg_server.local is None:
        pytest.skip("needs a server this test session started itself (to restart it)")
    yield pg_server.local
    # Whatever the test did, leave a running server for the next one.
    try:
        psycopg.connect(pg_server.dsn, connect_timeout=2).close()
    except psycopg.OperationalError:
        pg_server.local.start_again()


@pytest.mark.parametrize("exc, lost", [
    (psycopg.OperationalError("the connection is closed"), True),
    (psycopg.InterfaceError("the connection is closed"), True),
    (psycopg.errors.AdminShutdown(), True),
    (psycopg.errors.CrashShutdown(), True),
    (psycopg.errors.CannotConnectNow(), True),
    (psycopg.errors.ConnectionFailure(), True),
    (psycopg.errors.LockNotAvailable(), False),
    (psycopg.errors.QueryCanceled(), False),
    (psycopg.errors.UniqueViolation(), False),
    (ValueError("the connection is closed"), False),
])
def test_connection_loss_is_told_by_sqlstate_and_type(exc: BaseException, lost: bool) -> None:
    assert is_connection_lost(exc) is lost


def test_terminated_backend_mid_backfill_reconnects_and_backfills_each_row_once(db, dsn):
    create_users(db, ROWS)
    _count_updates(db)
    proc = spawn_online([*BACKFILL, *SLOW], dsn)
    wait_for_checkpoint(db, 1000)
    _terminate(db, _runner_pid(db))
    code, err = _finish(proc)
    assert code == 0, err
    assert "connection lost; reconnecting" in err and "reconnected" in err
    _assert_backfilled_exactly_once(db)
    # Progress went on from where it was, counting each row once.
    last = [line for line in err.splitlines() if "backfill progress" in line][-1]
    assert f"rows_done={ROWS}" in last and f"rows_updated={ROWS}" in last, last


def test_terminated_backend_in_a_throttle_query_reconnects_and_finishes(db, dsn):
    create_users(db, ROWS)
    _count_updates(db)
    # The throttle query runs on the job's session before every batch.
    proc = spawn_online([*BACKFILL, *SLOW, "--throttle-query", "SELECT 0 FROM pg_sleep(0.2)",
                         "--throttle-max", "1"], dsn)
    wait_for_checkpoint(db, 600)
    wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity a JOIN pgonline.jobs j"
                 " ON a.pid = j.pid WHERE a.query LIKE '%pg_sleep(0.2)%' AND a.state = 'active')")
    _terminate(db, _runner_pid(db))
    code, err = _finish(proc)
    assert code == 0, err
    _assert_backfilled_exactly_once(db)


def test_terminated_backend_mid_create_index_concurrently_rebuilds_a_valid_index(db, dsn):
    create_users(db, 2000)
    with psycopg.connect(dsn) as writer:
        # An open write transaction: CREATE INDEX CONCURRENTLY waits for it
        # after registering the (still invalid) index.
        writer.execute("UPDATE users SET hits = hits + 1 WHERE id = 1")
        proc = spawn_online(["add-index", "users", "email", "--lock-timeout", "60000"], dsn)
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                     " 'pgonline' AND query LIKE 'CREATE INDEX CONCURRENTLY%'"
                     " AND wait_event_type = 'Lock')")
        old = _runner_pid(db)
        _terminate(db, old)
        _wait_for_new_runner(db, old)
        writer.rollback()
    code, err = _finish(proc)
    assert code == 0, err
    # The interrupted build's INVALID index was dropped, a valid one built.
    assert db.execute("SELECT indexrelid::regclass::text, indisvalid FROM pg_index"
                      " WHERE indrelid = 'users'::regclass AND NOT indisprimary").fetchall() \
        == [("users_email_idx", True)]
    assert db.execute("SELECT status FROM pgonline.jobs").fetchall() == [("done",)]


def test_terminated_backend_during_a_lock_wait_retries_and_finishes(db, dsn):
    create_users(db, 100)
    with psycopg.connect(dsn) as holder:
        holder.execute("SELECT count(*) FROM users")  # ACCESS SHARE until rollback
        proc = spawn_online(["add-column", "users", "note", "text", "--lock-timeout", "30000"],
                            dsn)
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                     " 'pgonline' AND query LIKE 'ALTER TABLE%' AND wait_event_type = 'Lock')")
        old = _runner_pid(db)
        _terminate(db, old)
        _wait_for_new_runner(db, old)
        holder.rollback()
    code, err = _finish(proc)
    assert code == 0, err
    assert "note" in columns(db, "users")
    assert db.execute("SELECT status FROM pgonline.jobs").fetchall() == [("done",)]


def test_server_restart_mid_backfill_reconnects_and_backfills_each_row_once(db, dsn,
                                                                            local_server):
    create_users(db, ROWS)
    _count_updates(db)
    proc = spawn_online([*BACKFILL, *SLOW], dsn)
    wait_for_checkpoint(db, 1000)
    local_server.restart()  # pg_ctl restart -m fast: every session is terminated
    code, err = _finish(proc)
    assert code == 0, err
    with psycopg.connect(dsn, autocommit=True) as after:
        _assert_backfilled_exactly_once(after)


def test_server_down_past_reconnect_timeout_exits_5_and_resume_completes(db, dsn, online,
                                                                         local_server):
    create_users(db, ROWS)
    _count_updates(db)
    proc = spawn_online([*BACKFILL, *SLOW, "--reconnect-timeout", "2"], dsn)
    wait_for_checkpoint(db, 1000)
    local_server.shut_down()
    t0 = time.monotonic()
    try:
        code, err = _finish(proc)
        waited = time.monotonic() - t0
    finally:
        local_server.start_again()
    assert code == 5, err
    assert "--reconnect-timeout 2s" in err and "online resume 1" in err
    assert waited < 2 + 15, err  # bounded: the timeout, plus a last connect and exit
    with psycopg.connect(dsn, autocommit=True) as after:
        # The server was gone, so the journal still names the dead runner; no
        # session holds the job, which is what status reports.
        st = online("status")
        assert "interrupted" in st.out, st.out
        r = online("resume", "1")
        assert r.code == 0, r.err
        _assert_backfilled_exactly_once(after)


async def _take_back(dsn: str, job_id: int, backend_pid: int) -> str:
    """What the executor does with a job on its new session: 'ours' or the refusal."""
    ex = Executor(dsn, ExecOptions(), Progress(bar=False))
    ex._backend_pid = backend_pid
    conn = await connect(dsn)
    try:
        job = await journal.load_job(conn, job_id)
        try:
            await ex._take_job_back(conn, job)
        except JobTakenOver as exc:
            return exc.message
        return "ours"
    finally:
        await conn.close()


def test_after_reconnecting_a_job_another_process_took_is_left_to_it(db, dsn, online):
    create_users(db, 10)
    assert online(*BACKFILL, "--phase", "expand").code == 0
    db.execute("UPDATE pgonline.jobs SET status = 'running', pid = 4242")
    before = db.execute("SELECT status, pid, updated_at FROM pgonline.jobs").fetchone()
    # Another runner holds the job's lock (it resumed the job while we were away).
    with psycopg.connect(dsn, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, 1)", [journal.LOCK_NAMESPACE])
        assert "taken over by another process" in anyio.run(_take_back, dsn, 1, 4242)
    # Another runner ran it in the gap and is gone: the journal names its pid.
    assert "run by another process" in anyio.run(_take_back, dsn, 1, 4343)
    # Nothing was written for either refusal.
    assert db.execute("SELECT status, pid, updated_at FROM pgonline.jobs").fetchone() == before
    # Our own job: taken back, now under the new session's pid.
    assert anyio.run(_take_back, dsn, 1, 4242) == "ours"
    assert db.execute("SELECT status, pid <> 4242 FROM pgonline.jobs").fetchone() == ("running", True)


def test_a_step_that_keeps_losing_its_session_stops_within_one_reconnect_timeout(dsn):
    """Reconnecting succeeds every time, but the step ends its session again with no
    progress in between: the deadline set at the first loss still holds (exit 5), instead
    of every successful reconnect starting a new --reconnect-timeout."""
    from pgonline.engine.plan import LockLevel, Phase, Plan, Step
    from pgonline.errors import ConnectionLost

    step = Step(id="suicide", phase=Phase.EXPAND, lock=LockLevel.NONE,
                description="a step whose statement ends its own session",
                sql="SELECT pg_terminate_backend(pg_backend_pid())")
    plan = Plan("test", "nothing", {}, (step,))

    async def main() -> float:
        t0 = time.monotonic()
        with anyio.fail_after(30), pytest.raises(ConnectionLost):
            await Executor(dsn, ExecOptions(reconnect_timeout_s=2, max_attempts=1),
                           Progress()).run(plan)
        return time.monotonic() - t0

    assert anyio.run(main) < 15
