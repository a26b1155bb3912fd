"""set-not-null on a real server: the NOT VALID + VALIDATE path under load, pre-flight, crash,
re-run and rollback (PostgreSQL >= 18: a NOT NULL constraint; older: a helper CHECK)."""

from __future__ import annotations

import pytest

from tests.conftest import spawn_online
from tests.support.online_load import assert_stayed_online, crash, online_under_load, wait_for
from tests.support.tables import columns, create_users, not_null_step_ids, schema_snapshot


def _steps(db):
    return [s for (s,) in db.execute("SELECT step_id FROM pgonline.steps ORDER BY ord")]


def _pg18(db) -> bool:
    return db.info.server_version >= 180000


def test_sets_not_null_and_leaves_no_helper_check(db, online):
    create_users(db, 1000)
    r = online("set-not-null", "users", "email")
    assert r.code == 0, r.err
    assert columns(db, "users")["email"][1] is True
    assert _steps(db) == not_null_step_ids(db)
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgonline_nn%'"
                      ).fetchone() == (0,)
    if _pg18(db):
        assert db.execute("SELECT convalidated FROM pg_constraint WHERE conname = "
                          "'users_email_not_null' AND contype = 'n'").fetchone() == (True,)


def test_only_one_step_takes_access_exclusive_on_postgresql_18(db, online):
    if not _pg18(db):
        pytest.skip("NOT NULL ... NOT VALID needs PostgreSQL 18")
    create_users(db, 10)
    r = online("set-not-null", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    assert r.out.count("lock: ACCESS EXCLUSIVE") == 1
    assert 'ADD CONSTRAINT "users_email_not_null" NOT NULL "email" NOT VALID' in r.out


def test_an_abandoned_invalid_not_null_constraint_is_validated_not_trusted(db, online):
    if not _pg18(db):
        pytest.skip("NOT NULL ... NOT VALID needs PostgreSQL 18")
    create_users(db, 100)
    # What a run stopped between its two steps leaves behind: attnotnull is set,
    # but existing rows were never checked.
    db.execute("ALTER TABLE users ADD CONSTRAINT users_email_not_null NOT NULL email NOT VALID")
    assert columns(db, "users")["email"][1] is True  # attnotnull says so already
    r = online("set-not-null", "users", "email")
    assert r.code == 0, r.err
    assert _steps(db) == not_null_step_ids(db)
    assert db.execute("SELECT convalidated FROM pg_constraint WHERE conname = "
                      "'users_email_not_null'").fetchone() == (True,)


def test_rollback_makes_the_column_nullable_again(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    assert online("set-not-null", "users", "email").code == 0
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert columns(db, "users")["email"][1] is False
    assert schema_snapshot(db) == before


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
    # Resumed, and stopped before dropping the fill trigger (the column has no default).
    assert "resumed and paused" in r.out and "--phase contract" in r.out
    assert columns(db, "users")["email"][1] is True
    assert db.execute("SELECT count(*) FROM users WHERE email <> 'x' || id").fetchone() == (0,)


def test_dry_run_shows_each_lock(db, online):
    create_users(db, 10)
    r = online("set-not-null", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    add, validate = not_null_step_ids(db)[1:3]
    assert f"{add}: add " in r.out and "NOT VALID" in r.out
    assert r.out.index("lock: ACCESS EXCLUSIVE") > r.out.index(f"{add}: ")
    assert f"{validate}: validate " in r.out and "lock: SHARE UPDATE EXCLUSIVE" in r.out
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
