"""add-unique and add-primary-key on a real server: index CONCURRENTLY then USING INDEX."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.online_load import assert_stayed_online, online_under_load
from tests.support.tables import create_users, schema_snapshot


def _con(db, name):
    return db.execute("SELECT pg_get_constraintdef(oid), contype::text FROM pg_constraint"
                      " WHERE conname = %s", [name]).fetchone()


def _no_pk_table(db, rows):
    db.execute("CREATE TABLE accounts (id bigint NOT NULL, region text NOT NULL, note text,"
               " hits int NOT NULL DEFAULT 0)")
    db.execute("INSERT INTO accounts SELECT g, 'r' || (g %% 7), NULL FROM generate_series(1, %s) g",
               [rows])
    # The workload addresses rows by id; without a PK it still finds them by a seq scan.
    db.execute("CREATE INDEX accounts_id_plain ON accounts (id)")


def test_adds_unique_constraint_under_load(db, dsn):
    create_users(db, 20_000)
    code, stats = online_under_load(dsn, "add-unique", "users", "email", max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert _con(db, "users_email_key") == ("UNIQUE (email)", "u")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("UPDATE users SET email = 'user1@example.com' WHERE id = 2")


def test_adds_primary_key_under_load(db, dsn):
    _no_pk_table(db, 20_000)
    code, stats = online_under_load(dsn, "add-primary-key", "accounts", "id",
                                    table="accounts", max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert _con(db, "accounts_pkey") == ("PRIMARY KEY (id)", "p")


def test_duplicates_are_found_for_the_user(db, online):
    create_users(db, 100)
    db.execute("UPDATE users SET email = 'a@x' WHERE id IN (1, 2, 3)")
    db.execute("UPDATE users SET email = 'b@x' WHERE id IN (4, 5)")
    db.execute("UPDATE users SET email = NULL WHERE id IN (6, 7)")  # NULLs are distinct
    before = schema_snapshot(db)
    r = online("add-unique", "users", "email")
    assert r.code == 4
    assert "2 duplicate value groups" in r.err
    assert "(email)=(a@x) x3" in r.err and "(email)=(b@x) x2" in r.err
    assert schema_snapshot(db) == before


def test_partial_uniqueness_points_to_a_unique_partial_index(db, online):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online("add-unique", "users", "email", "--where", "hits > 0")
    assert r.code == 2
    assert "cannot have a WHERE" in r.err and "add-index users email --unique --where" in r.err
    assert schema_snapshot(db) == before


def test_nullable_primary_key_columns_are_refused_with_the_fix(db, online):
    _no_pk_table(db, 10)
    before = schema_snapshot(db)
    r = online("add-primary-key", "accounts", "id", "note")
    assert r.code == 3
    assert '"note"' in r.err and "online set-not-null" in r.err
    assert schema_snapshot(db) == before


def test_invalid_leftover_is_rebuilt_after_duplicates_are_fixed(db, online):
    create_users(db, 300)
    db.execute("UPDATE users SET email = 'dup' WHERE id IN (1, 2)")
    r = online("add-unique", "users", "email")
    assert r.code == 4
    # Someone tried by hand and failed: the INVALID index is left behind.
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY users_email_key ON users (email)")
    db.execute("UPDATE users SET email = 'fixed' WHERE id = 2")
    r = online("add-unique", "users", "email")
    assert r.code == 0, r.err
    assert _con(db, "users_email_key") == ("UNIQUE (email)", "u")
    assert db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_key'"
                      "::regclass").fetchone() == (True,)


def test_rerun_after_the_attach_step_failed_on_a_lock_completes(db, dsn, online):
    create_users(db, 500)
    with psycopg.connect(dsn) as other:
        # ACCESS SHARE does not stop the concurrent build, but it does stop
        # the ACCESS EXCLUSIVE attach step.
        other.execute("SELECT count(*) FROM users")
        r = online("add-unique", "users", "email", "--lock-timeout", "50",
                   "--max-retries", "2")
        assert r.code == 5, r.err
    steps = dict(db.execute("SELECT step_id, status FROM pgonline.steps").fetchall())
    assert steps == {"create-index": "done", "add-constraint": "pending"}
    r = online("add-unique", "users", "email")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert _con(db, "users_email_key") == ("UNIQUE (email)", "u")


def test_rollback_removes_constraint_and_index(db, online):
    create_users(db, 50)
    before = schema_snapshot(db)
    assert online("add-unique", "users", "email", "created_at", "--name", "u1").code == 0
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def test_dry_run_shows_concurrent_build_then_brief_attach(db, online):
    create_users(db, 10)
    r = online("add-primary-key", "users", "id", "--dry-run")
    assert r.code == 3 and "already has a primary key" in r.err
    r = online("add-unique", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    assert "lock: SHARE UPDATE EXCLUSIVE" in r.out and "outside a transaction" in r.out
    assert "CREATE UNIQUE INDEX CONCURRENTLY" in r.out
    assert "lock: ACCESS EXCLUSIVE" in r.out and "UNIQUE USING INDEX" in r.out
    assert _con(db, "users_email_key") is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (["add-unique", "nope", "email"], 3, "does not exist"),
    (["add-unique", "users", "nope"], 3, "does not exist"),
    (["add-unique", "users", '"email; drop table users"'], 3, "does not exist"),
    (["add-unique", "users", "email", "--name", "users_pkey"], 3, "already exists"),
    (["add-unique", "users", "email", "--name", "users"], 3, "already exists"),
    (["add-unique", "users", "email", "email"], 3, "listed twice"),
    (["add-primary-key", "users", "email"], 3, "already has a primary key"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online(*args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before
