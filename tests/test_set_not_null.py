"""set-not-null on a real server: validated CHECK path under load, pre-flight, crash and re-run."""

from __future__ import annotations

import pytest

from tests.conftest import spawn_online
from tests.support.online_load import assert_stayed_online, crash, online_under_load, wait_for
from tests.support.tables import columns, create_users, schema_snapshot


def _steps(db):
    return [s for (s,) in db.execute("SELECT step_id FROM pgonline.steps ORDER BY ord")]


def test_sets_not_null_and_drops_the_helper_check(db, online):
    create_users(db, 1000)
    r = online("set-not-null", "users", "email")
    assert r.code == 0, r.err
    assert columns(db, "users")["email"][1] is True
    assert _steps(db) == ["add-check", "validate-check", "set-not-null", "drop-check"]
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgonline_nn%'"
                      ).fetchone() == (0,)


def test_nulls_are_refused_with_their_count(db, online):
    create_users(db, 100)
    db.execute("UPDATE users SET email = NULL WHERE id <= 7")
    before = schema_snapshot(db)
    r = online("set-not-null", "users", "email")
    assert r.code == 4
    assert "7 rows" in r.err and "--backfill" in r.err
    assert schema_snapshot(db) == before


def test_backfill_fills_nulls_under_load_then_sets_not_null(db, dsn):
    create_users(db, 20_000)
    db.execute("UPDATE users SET email = NULL WHERE id % 3 = 0")
    code, stats = online_under_load(
        dsn, "set-not-null", "users", "email", "--backfill", "'user' || id || '@filled'",
        "--batch-size", "500", max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert columns(db, "users")["email"][1] is True
    assert db.execute("SELECT count(*) FROM users WHERE email LIKE '%@filled'").fetchone() == (
        6666,)
    # The backfill only touched NULL rows, and the workload lost no update.
    assert db.execute("SELECT sum(hits) FROM users").fetchone()[0] == sum(
        stats.increments.values())


def test_rerun_after_a_crash_during_backfill_completes(db, dsn, online):
    create_users(db, 20_000)
    db.execute("UPDATE users SET email = NULL")
    proc = spawn_online(["set-not-null", "users", "email", "--backfill", "'x' || id",
                         "--batch-size", "100", "--max-batch-size", "100", "--sleep-ms", "30"],
                        dsn)
    wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'pgonline'"
                 " AND tablename = 'checkpoints')")
    wait_for(db, "SELECT EXISTS (SELECT 1 FROM users WHERE email IS NOT NULL)")
    crash(proc, db)
    left = db.execute("SELECT count(*) FROM users WHERE email IS NULL").fetchone()[0]
    assert 0 < left < 20_000
    r = online("set-not-null", "users", "email", "--backfill", "'x' || id",
               "--batch-size", "100", "--max-batch-size", "100", "--sleep-ms", "30")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert columns(db, "users")["email"][1] is True
    assert db.execute("SELECT count(*) FROM users WHERE email <> 'x' || id").fetchone() == (0,)


def test_dry_run_shows_each_lock(db, online):
    create_users(db, 10)
    r = online("set-not-null", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    assert "add-check: add CHECK (col IS NOT NULL) NOT VALID\n   lock: ACCESS EXCLUSIVE" in r.out
    assert "validate-check: validate the check against existing rows\n" \
           "   lock: SHARE UPDATE EXCLUSIVE" in r.out
    assert columns(db, "users")["email"][1] is False


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "email"], 3, "does not exist"),
    (["users", "nope"], 3, "does not exist"),
    (["users", '"email; drop table users"'], 3, "does not exist"),
    (["users", "hits"], 3, "already NOT NULL"),
    (["users", "email", "--backfill", "nope()"], 2, "bad backfill expression"),
    (["users", "email", "--backfill", "1); drop table users; --"], 2, "backfill expression"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online("set-not-null", *args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before
