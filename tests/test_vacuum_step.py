"""The VACUUM (ANALYZE) step after a backfill: the contract does not wait for the autovacuum
our own backfill started (issue #13, item 5).

A real autovacuum is needed (the server cancels only autovacuum workers that block a lock
request), so the test makes the session server's launcher wake every second and the
table's autovacuum slow, starts one, and then runs the change while it works.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

ROWS = 50_000


@pytest.fixture
def eager_autovacuum(pg_server: Any) -> Iterator[None]:
    """autovacuum_naptime = 1 s on the session server for this test (reset afterwards)."""
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        row = admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        if not (row and row[0]):
            pytest.skip("needs a superuser to change autovacuum_naptime")
        admin.execute("ALTER SYSTEM SET autovacuum_naptime = '1s'")
        admin.execute("SELECT pg_reload_conf()")
        try:
            yield
        finally:
            admin.execute("ALTER SYSTEM RESET autovacuum_naptime")
            admin.execute("SELECT pg_reload_conf()")


def autovacuum_running(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("""SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                         WHERE backend_type = 'autovacuum worker'
                           AND query LIKE '%%users%%' AND datname = current_database())""").fetchone()
    return bool(row and row[0])


def test_a_running_autovacuum_yields_to_our_vacuum_and_the_contract_does_not_wait_for_it(
        db, online, eager_autovacuum):
    db.execute("CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL, hits int)")
    db.execute("INSERT INTO users (email, hits) SELECT 'u' || g, g FROM generate_series(1, %s) g",
               [ROWS])
    # A slow autovacuum, as on a table of hundreds of millions of rows: alone it
    # takes minutes here.
    db.execute("ALTER TABLE users SET (autovacuum_vacuum_cost_delay = 100,"
               " autovacuum_vacuum_cost_limit = 10)")
    db.execute("VACUUM ANALYZE users")
    command = ["add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null",
               "--default", "''", "--vacuum-cost-delay", "0"]
    r = online(*command, "--phase", "expand")
    assert r.code == 0, r.err
    # As a backfill of a big table does: dead row versions make autovacuum start.
    db.execute("UPDATE users SET hits = hits + 1")
    t_wait = time.monotonic()
    deadline = t_wait + 60
    while not autovacuum_running(db):
        assert time.monotonic() < deadline, "no autovacuum started"
        time.sleep(0.2)
    t0 = time.monotonic()
    print(f"autovacuum started after {t0 - t_wait:.1f}s")
    r = online(*command, "--phase", "backfill")
    assert r.code == 0, r.err
    assert autovacuum_running(db) is False
    r = online(*command, "--phase", "contract")
    took = time.monotonic() - t0
    print(f"backfill and contract phases: {took:.1f}s")
    assert r.code == 0, r.err
    # Our VACUUM queued behind the autovacuum, which the server cancelled after
    # deadlock_timeout; the contract steps found the table free.
    assert "waiting outside the lock queue for maintenance" not in r.err
    assert took < 30, (took, r.err)
    assert db.execute("SELECT vacuum_count >= 1 FROM pg_stat_user_tables"
                      " WHERE relname = 'users'").fetchone() == (True,)
    assert db.execute("SELECT count(*) FROM users WHERE token IS DISTINCT FROM md5(email)"
                      ).fetchone() == (0,)


def test_no_vacuum_skips_the_step_and_says_so(db, online):
    db.execute("CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL)")
    db.execute("INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, 1000) g")
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)", "--no-vacuum")
    assert r.code == 0, r.err
    assert "reason=--no-vacuum step=vacuum" in r.err
    assert db.execute("SELECT vacuum_count FROM pg_stat_user_tables"
                      " WHERE relname = 'users'").fetchone() == (0,)
    r = online("status", "1")
    assert "vacuum" in r.out
