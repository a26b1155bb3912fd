"""add-foreign-key on a real server: NOT VALID + VALIDATE under load, orphans, locks, re-run."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.online_load import assert_stayed_online, online_under_load
from tests.support.tables import create_users, schema_snapshot


def _orgs(db, users_rows):
    create_users(db, users_rows)
    db.execute("CREATE TABLE orgs (id int PRIMARY KEY, code text NOT NULL UNIQUE, note text)")
    db.execute("INSERT INTO orgs SELECT g, 'o' || g FROM generate_series(1, 50) g")
    db.execute("ALTER TABLE users ADD COLUMN org_id int, ADD COLUMN org_code text")
    db.execute("UPDATE users SET org_id = 1 + id % 50, org_code = 'o' || (1 + id % 50)")


def _fk(db, name):
    return db.execute("SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                      " WHERE conname = %s", [name]).fetchone()


def test_adds_a_validated_fk_under_load(db, dsn):
    _orgs(db, 20_000)
    code, stats = online_under_load(dsn, "add-foreign-key", "users", "org_id",
                                    "--references", "orgs", "--on-delete", "set null",
                                    max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert _fk(db, "users_org_id_fkey") == (
        "FOREIGN KEY (org_id) REFERENCES orgs(id) ON DELETE SET NULL", True)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute("UPDATE users SET org_id = 999 WHERE id = 1")


def test_references_unique_columns_by_name(db, online):
    _orgs(db, 300)
    r = online("add-foreign-key", "users", "org_code", "--references", "public.orgs (code)",
               "--name", "users_org_code")
    assert r.code == 0, r.err
    assert _fk(db, "users_org_code") == (
        "FOREIGN KEY (org_code) REFERENCES orgs(code)", True)


def test_orphans_are_counted_and_shown(db, online):
    _orgs(db, 100)
    db.execute("UPDATE users SET org_id = 77 WHERE id IN (5, 6)")
    db.execute("UPDATE users SET org_id = NULL WHERE id = 7")  # MATCH SIMPLE: exempt
    before = schema_snapshot(db)
    r = online("add-foreign-key", "users", "org_id", "--references", "orgs")
    assert r.code == 4
    assert "2 rows" in r.err and "(org_id)=(77)" in r.err
    assert schema_snapshot(db) == before


def test_rerun_after_validate_failed_on_a_lock_completes(db, dsn, online):
    _orgs(db, 500)
    args = ["add-foreign-key", "users", "org_id", "--references", "orgs"]
    assert online(*args, "--phase", "expand").code == 0
    assert _fk(db, "users_org_id_fkey")[1] is False
    with psycopg.connect(dsn) as other:
        # A maintenance-level holder: with no maintenance wait, VALIDATE fails on its lock.
        other.execute("LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE")
        r = online(*args, "--lock-timeout", "50", "--max-retries", "2", "--maintenance-wait", "0")
        assert r.code == 5, r.err
    r = online(*args)
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert _fk(db, "users_org_id_fkey")[1] is True


def test_dry_run_states_the_locks_on_both_tables(db, online):
    _orgs(db, 10)
    r = online("add-foreign-key", "users", "org_id", "--references", "orgs", "--dry-run")
    assert r.code == 0, r.err
    assert "lock: SHARE ROW EXCLUSIVE" in r.out and "lock: SHARE UPDATE EXCLUSIVE" in r.out
    assert '"public"."orgs" in SHARE ROW EXCLUSIVE mode' in r.out
    assert '"public"."orgs" in ROW SHARE mode' in r.out
    assert "no index on" in r.out  # users.org_id is unindexed: deletes on orgs would scan
    assert _fk(db, "users_org_id_fkey") is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "org_id", "--references", "orgs"], 3, "does not exist"),
    (["users", "org_id", "--references", "nope"], 3, "does not exist"),
    (["users", "nope", "--references", "orgs"], 3, "does not exist"),
    (["users", "org_id", "--references", "orgs(nope)"], 3, "does not exist"),
    (["users", "org_id", "--references", "orgs(note)"], 3, "no primary key or unique"),
    (["users", "org_id", "org_code", "--references", "orgs"], 2, "2 referencing columns"),
    (["users", "email", "--references", "orgs"], 2, "cannot be compared"),
    (["users", "org_id", "--references", "orgs(id"], 2, "expected REFTABLE(COL"),
    (["users", '"org_id; drop table users"', "--references", "orgs"], 3, "does not exist"),
    (["users", "org_id", "--references", '"orgs; drop table orgs"'], 3, "does not exist"),
    (["users", "org_id", "--references", "orgs", "--on-delete", "drop"], 2, "drop"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    _orgs(db, 20)
    before = schema_snapshot(db)
    r = online("add-foreign-key", *args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before
