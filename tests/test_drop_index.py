"""drop-index on a real server: CONCURRENTLY under load, crash and re-run, constraint refusals."""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import spawn_online
from tests.support.online_load import assert_stayed_online, crash, online_under_load, wait_for
from tests.support.tables import create_users, schema_snapshot


def _exists(db, name):
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", [name]).fetchone()[0]


def test_drops_index_under_load(db, dsn):
    create_users(db, 20_000)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    code, stats = online_under_load(dsn, "drop-index", "users_email_idx", max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert not _exists(db, "users_email_idx")


def test_rollback_recreates_the_index_concurrently(db, online):
    create_users(db, 100)
    db.execute("CREATE UNIQUE INDEX users_email_idx ON users (lower(email)) WHERE hits >= 0")
    before = schema_snapshot(db)
    assert online("drop-index", "public.users_email_idx").code == 0
    assert not _exists(db, "users_email_idx")
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def _valid(db, name):
    return db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                      [name]).fetchone()


def test_rollback_after_a_failed_rebuild_rebuilds_the_index_not_keeps_its_invalid_leftover(db, online):
    create_users(db, 100)
    db.execute("CREATE UNIQUE INDEX users_email_idx ON users (email)")
    assert online("drop-index", "users_email_idx").code == 0
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    # A duplicate written after the drop: the concurrent rebuild fails and
    # leaves an INVALID index of that name behind.
    db.execute("UPDATE users SET email = 'user1@example.com' WHERE id = 2")
    r = online("rollback", str(job), "--confirm")
    assert r.code != 0 and "users_email_idx" in r.err, r.err
    assert _valid(db, "users_email_idx") == (False,)
    db.execute("UPDATE users SET email = 'user2@example.com' WHERE id = 2")
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert _valid(db, "users_email_idx") == (True,)  # rebuilt, not skipped by IF NOT EXISTS


def test_rerun_after_a_crash_mid_drop_completes(db, dsn, online):
    create_users(db, 1000)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    with psycopg.connect(dsn) as reader:
        # An open transaction that used the table: DROP INDEX CONCURRENTLY
        # waits for it before removing the index.
        reader.execute("SELECT count(*) FROM users WHERE email = 'x'")
        proc = spawn_online(["drop-index", "users_email_idx", "--lock-timeout", "60000"], dsn)
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                     " 'pgonline' AND query LIKE 'DROP INDEX CONCURRENTLY%'"
                     " AND wait_event_type = 'Lock')")
        crash(proc, db)
        reader.rollback()
    r = online("drop-index", "users_email_idx")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert not _exists(db, "users_email_idx")


def test_rerun_after_a_crash_between_the_drop_and_its_journal_entry_finishes_the_job(db, online):
    create_users(db, 100)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    assert online("drop-index", "users_email_idx").code == 0
    # What a process killed right after DROP INDEX CONCURRENTLY returned, before
    # it journaled the step, leaves: the index gone, the job and step running.
    db.execute("UPDATE pgonline.jobs SET status = 'running', finished_at = NULL")
    db.execute("UPDATE pgonline.steps SET status = 'running', finished_at = NULL")
    r = online("drop-index", "users_email_idx")
    assert r.code == 0, r.err  # not "index does not exist": the catalog no longer knows its table
    assert "resumed" in r.out
    assert db.execute("SELECT count(*), min(status) FROM pgonline.jobs").fetchone() == (1, "done")
    # The job is finished, so the table takes new jobs again.
    assert online("add-index", "users", "email").code == 0


def test_a_second_drop_of_a_dropped_index_says_it_does_not_exist(db, online):
    create_users(db, 100)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    assert online("drop-index", "users_email_idx").code == 0
    r = online("drop-index", "users_email_idx")
    assert r.code == 3 and 'index "users_email_idx" does not exist' in r.err, r.err


def test_dry_run_shows_lock_and_keeps_definition_for_rollback(db, online):
    create_users(db, 10)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    r = online("drop-index", "users_email_idx", "--dry-run")
    assert r.code == 0, r.err
    assert "lock: SHARE UPDATE EXCLUSIVE" in r.out and "outside a transaction" in r.out
    assert "CREATE INDEX users_email_idx ON public.users USING btree (email)" in r.out
    assert _exists(db, "users_email_idx")


@pytest.mark.parametrize(("name", "code", "message"), [
    ("users_pkey", 3, "implements the PRIMARY KEY constraint"),
    ("users_email_key", 3, "implements the UNIQUE constraint"),
    ("orgs_code_idx", 3, "foreign key \"orders_code_fkey\" depends on index"),
    ("nope", 3, "does not exist"),
    ("users", 3, "is not an index"),
    ('"users_email_idx; drop table users"', 3, "does not exist"),
    ('"unterminated', 2, "unterminated quoted identifier"),
])
def test_refusals_change_nothing(db, online, name, code, message):
    create_users(db, 10)
    db.execute("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)")
    db.execute("CREATE TABLE orgs (code text)")
    db.execute("CREATE UNIQUE INDEX orgs_code_idx ON orgs (code)")
    db.execute("CREATE TABLE orders (code text REFERENCES orgs (code))")
    before = schema_snapshot(db)
    r = online("drop-index", name)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before
