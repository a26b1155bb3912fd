"""A blocking-lock step waits for a running VACUUM outside the lock queue."""

from __future__ import annotations

import threading
import time

import psycopg

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
    assert "waiting for vacuum" in r.err
    assert "flag" in columns(db, "users")
    assert vacuum_done and finished >= vacuum_done[0]
    # Readers never queued behind a waiting ACCESS EXCLUSIVE request.
    assert max(latencies) < 300, max(latencies)
