"""A locking step waits for running maintenance (VACUUM, ANALYZE, index builds) outside the lock queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from pgonline.connection import SessionSettings, session_setup
from tests.support.probe import reader_latencies
from tests.support.tables import columns, create_users


def _slow_vacuum(dsn: str, started: threading.Event, done: list[float]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Cost-based delay makes a manual VACUUM crawl, like a throttled autovacuum.
        conn.execute("SET vacuum_cost_delay = '10ms'")
        conn.execute("SET vacuum_cost_limit = 1")
        started.set()
        conn.execute("VACUUM (DISABLE_PAGE_SKIPPING) users")
        done.append(time.monotonic())


def test_ddl_waits_for_vacuum_without_queueing_application_queries(db, dsn, online):
    create_users(db, 8000)
    db.execute("UPDATE users SET hits = 1 WHERE id % 2 = 0")  # dead tuples to vacuum
    started, vacuum_done = threading.Event(), []
    vac = threading.Thread(target=_slow_vacuum, args=(dsn, started, vacuum_done))
    vac.start()
    started.wait(5)
    deadline = time.monotonic() + 5
    while not db.execute("SELECT count(*) FROM pg_stat_progress_vacuum").fetchone()[0]:
        assert time.monotonic() < deadline, "vacuum did not start"
        time.sleep(0.02)
    try:
        with reader_latencies(dsn, "SELECT hits FROM users WHERE id = 3") as latencies:
            r = online("add-column", "users", "flag", "bool", "--default", "true",
                       "--lock-timeout", "2000")
            finished = time.monotonic()
    finally:
        vac.join()
    assert r.code == 0, r.err
    assert "waiting outside the lock queue for maintenance" in r.err
    assert "VACUUM" in r.err
    assert "flag" in columns(db, "users")
    assert vacuum_done and finished >= vacuum_done[0]
    # Readers never queued behind a waiting ACCESS EXCLUSIVE request.
    assert max(latencies) < 300, max(latencies)


@contextmanager
def _held(dsn: str, statement: str, seconds: float) -> Iterator[list[float]]:
    """``statement`` in an open transaction (holding its lock) for ``seconds``; yields [release time]."""
    released: list[float] = []
    holding = threading.Event()

    def hold() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute(statement.encode())
            holding.set()
            time.sleep(seconds)
            conn.commit()
            released.append(time.monotonic())

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(10)
    try:
        yield released
    finally:
        thread.join()


# Maintenance that can be held open in a transaction, as a stand-in for a long
# (auto)ANALYZE or index build; the LOCK is any other self-conflicting holder.
HOLDERS = {
    "analyze": "ANALYZE users",
    "create-index": "CREATE INDEX users_hits_plain ON users (hits)",
    "share-update-exclusive": "LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE",
}


@pytest.mark.parametrize("holder", sorted(HOLDERS))
def test_blocking_step_waits_for_maintenance_holder_and_readers_never_queue(db, dsn, online, holder):
    create_users(db, 2000)
    with reader_latencies(dsn, "SELECT hits FROM users WHERE id = 3") as latencies, \
            _held(dsn, HOLDERS[holder], 1.5) as released:
        # One attempt only: without the wait it would time out in the queue.
        r = online("set-not-null", "users", "email", "--max-retries", "1", "--lock-timeout", "200")
        finished = time.monotonic()
    assert r.code == 0, r.err
    assert "waiting outside the lock queue for maintenance" in r.err
    assert released and finished >= released[0]
    assert db.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                      "AND attname = 'email'").fetchone()[0] is True
    assert max(latencies) < 300, max(latencies)


def test_index_build_waits_for_analyze_instead_of_failing_its_lock_attempts(db, dsn, online):
    # CREATE INDEX CONCURRENTLY needs SHARE UPDATE EXCLUSIVE, which ANALYZE holds.
    create_users(db, 2000)
    with _held(dsn, "ANALYZE users", 1.5):
        r = online("add-index", "users", "hits", "--max-retries", "1", "--lock-timeout", "200")
    assert r.code == 0, r.err
    assert "waiting outside the lock queue for maintenance" in r.err
    valid = db.execute("SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'users'::regclass "
                       "AND indkey::text = (SELECT attnum::text FROM pg_attribute WHERE "
                       "attrelid = 'users'::regclass AND attname = 'hits')").fetchone()[0]
    assert valid is True


def test_wait_is_bounded_then_the_step_fails_resumably_and_resumes(db, dsn, online):
    create_users(db, 2000)
    with _held(dsn, "LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE", 2.0):
        t0 = time.monotonic()
        r = online("set-not-null", "users", "email", "--max-retries", "1", "--lock-timeout", "100",
                   "--maintenance-wait", "0.3")
        took = time.monotonic() - t0
    assert r.code == 5, r.err  # a lock error, not a hang
    assert took < 1.8, took
    assert "online resume" in r.err
    job = db.execute("SELECT max(id) FROM pgonline.jobs").fetchone()[0]
    r = online("resume", str(job))
    assert r.code == 0, r.err
    assert db.execute("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                      "AND attname = 'email'").fetchone()[0] is True


def test_index_builds_are_serial_unless_parallel_workers_are_asked_for(db, online):
    # An event trigger records the setting in force when our CREATE INDEX runs.
    db.execute("CREATE TABLE seen (what text, workers text)")
    db.execute("""CREATE FUNCTION record_workers() RETURNS event_trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO seen SELECT object_identity,
                        current_setting('max_parallel_maintenance_workers')
                    FROM pg_event_trigger_ddl_commands() WHERE schema_name = 'public'; END $$""")
    db.execute("CREATE EVENT TRIGGER record_workers ON ddl_command_end "
               "WHEN TAG IN ('CREATE INDEX') EXECUTE FUNCTION record_workers()")
    create_users(db, 100)
    assert online("add-index", "users", "hits").code == 0
    assert online("add-index", "users", "created_at", "--parallel-workers", "3").code == 0
    assert [r[0] for r in db.execute("SELECT workers FROM seen").fetchall()] == ["0", "3"]


def test_session_setup_keeps_the_server_setting_when_asked():
    kept = session_setup(SessionSettings(maintenance_workers=None))
    assert kept is not None and "max_parallel_maintenance_workers" not in kept.as_string()
    assert "max_parallel_maintenance_workers" in str(session_setup(SessionSettings()).as_string())
    # Our VACUUM step's throttle is always set (a manual VACUUM is unthrottled by default).
    assert "vacuum_cost_delay = '2ms'" in kept.as_string()
