"""Replication lag throttle against a real streaming replica (primary + pg_basebackup -R)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgonline.connection import with_database
from pgonline.devtools.local_server import LocalServer
from tests.conftest import spawn_online
from tests.support.logstream import LogStream
from tests.support.replica import Replica, primary_and_replica, usable_bindir, wait_caught_up
from tests.support.tables import create_users

_n = itertools.count()
ROWS = 2000
SLOW = ["--batch-size", "200", "--min-batch-size", "50", "--max-batch-size", "200",
        "--sleep-ms", "20", "--throttle-interval", "0.2"]


@pytest.fixture(scope="module")
def cluster(pg_server) -> Iterator[tuple[LocalServer, Replica]]:  # type: ignore[no-untyped-def]
    bindir, why = usable_bindir(pg_server.bindir)
    if bindir is None:
        pytest.skip(f"no PostgreSQL binaries usable for a replica: {why}")
    with primary_and_replica(bindir) as pair:
        yield pair


@pytest.fixture
def lagging(cluster: tuple[LocalServer, Replica]) -> Iterator[tuple[str, str, psycopg.Connection]]:  # type: ignore[type-arg]
    """A fresh database on the primary with ROWS users, replicated, then replay paused."""
    primary, replica = cluster
    name = f"lag_{next(_n)}"
    with psycopg.connect(primary.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    dsn = with_database(primary.dsn, name)
    rdsn = with_database(replica.dsn, name)
    with psycopg.connect(dsn, autocommit=True) as db:
        create_users(db, ROWS)
        wait_caught_up(primary.dsn)
        with psycopg.connect(rdsn, autocommit=True) as rconn:
            deadline = time.monotonic() + 20
            # A replayed commit timestamps the replica's position (for time-based lag).
            while rconn.execute("SELECT pg_last_xact_replay_timestamp() IS NULL").fetchone() == (True,):
                assert time.monotonic() < deadline
                db.execute("CREATE TEMP TABLE IF NOT EXISTS tick (x int)")
                time.sleep(0.2)
            rconn.execute("SELECT pg_wal_replay_pause()")
            try:
                time.sleep(1.5)  # the last replayed commit is now > 1s old
                # WAL the paused replica receives but does not replay (~700 kB).
                db.execute("CREATE TABLE filler AS SELECT g, repeat('x', 100) AS pad "
                           "FROM generate_series(1, 5000) g")
                yield dsn, rdsn, rconn
            finally:
                rconn.execute("SELECT pg_wal_replay_resume()")
    wait_caught_up(primary.dsn)
    with psycopg.connect(primary.dsn, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _rows_done(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT coalesce(sum(rows_done), 0) FROM pgonline.checkpoints").fetchone()
    return int(row[0]) if row else 0


def _run_paused_then_resumed(dsn: str, rconn: psycopg.Connection, extra: list[str]) -> LogStream:  # type: ignore[type-arg]
    proc = spawn_online(["--log-format", "json", "add-column", "users", "t", "uuid",
                         "--default", "gen_random_uuid()", *SLOW, *extra], dsn)
    logs = LogStream(proc)
    try:
        ev = logs.wait_for(lambda e: e.get("event") == "throttled", timeout=60)
        assert "replica lag" in ev["reason"], ev
        time.sleep(1.0)
        # Paused before the first batch, and still paused a second later.
        assert _rows_done(dsn) == 0
        assert proc.poll() is None
        rconn.execute("SELECT pg_wal_replay_resume()")
        logs.wait_for(lambda e: e.get("event") == "backfill progress" and e["rows_done"] > 0,
                      timeout=60)
        assert logs.finish() == 0, "".join(logs.raw)
    finally:
        if proc.poll() is None:
            proc.kill()
    return logs


def test_backfill_pauses_while_replica_bytes_behind_on_primary_and_continues_after_replay(lagging):
    dsn, _rdsn, rconn = lagging
    logs = _run_paused_then_resumed(dsn, rconn, ["--max-lag", "64kB"])
    reason = next(e["reason"] for e in logs.events if e.get("event") == "throttled")
    assert "walreceiver" in reason and "> --max-lag 64.0kB" in reason
    with psycopg.connect(dsn, autocommit=True) as db:
        assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM users").fetchone() == (ROWS,)


def test_backfill_pauses_on_replica_time_lag_via_replica_dsn(lagging):
    dsn, rdsn, rconn = lagging
    logs = _run_paused_then_resumed(dsn, rconn, ["--max-lag", "1s", "--replica-dsn", rdsn])
    reason = next(e["reason"] for e in logs.events if e.get("event") == "throttled")
    assert "behind (> --max-lag 1.0s)" in reason, reason
    # Progress output carries the pause reason, then clears it.
    progress = [e for e in logs.events if e.get("event") == "backfill progress"]
    assert any(e["paused"] and "replica lag" in e["paused"] for e in progress)
    assert progress[-1]["paused"] is None and progress[-1]["percent"] == 100.0
    with psycopg.connect(dsn, autocommit=True) as db:
        assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)


def test_replica_dsn_that_is_not_a_standby_fails_before_any_change(db, dsn, online):
    from tests.support.tables import schema_snapshot

    create_users(db, 10)
    before = schema_snapshot(db)
    r = online("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
               "--max-lag", "5s", "--replica-dsn", dsn)
    assert r.code == 4, r.err
    assert "not a standby" in r.err
    assert schema_snapshot(db) == before
