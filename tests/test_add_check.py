"""add-check on a real server: NOT VALID + VALIDATE under load, pre-flight, failure and re-run."""

from __future__ import annotations

import psycopg
import pytest

from tests.support.online_load import assert_stayed_online, online_under_load
from tests.support.tables import create_users, schema_snapshot


def _constraint(db, name):
    return db.execute("SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint"
                      " WHERE conname = %s", [name]).fetchone()


def test_adds_a_validated_check_under_load(db, dsn):
    create_users(db, 20_000)
    code, stats = online_under_load(dsn, "add-check", "users", "hits_nonneg", "hits >= 0",
                                    max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert _constraint(db, "hits_nonneg") == ("CHECK ((hits >= 0))", True)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("UPDATE users SET hits = -1 WHERE id = 1")


def test_violating_rows_are_counted_and_shown(db, online):
    create_users(db, 100)
    db.execute("UPDATE users SET hits = -5 WHERE id IN (4, 9, 11)")
    db.execute("UPDATE users SET email = NULL WHERE id = 12")  # NULL passes a CHECK
    before = schema_snapshot(db)
    r = online("add-check", "users", "sane", "hits >= 0 AND email LIKE '%@%'")
    assert r.code == 4
    assert "3 rows" in r.err and "(id)=(4)" in r.err and "(id)=(11)" in r.err
    assert schema_snapshot(db) == before


def test_rerun_after_validate_failed_on_a_lock_completes(db, dsn, online):
    create_users(db, 500)
    assert online("add-check", "users", "hits_nonneg", "hits >= 0", "--phase", "expand").code == 0
    assert _constraint(db, "hits_nonneg")[1] is False
    with psycopg.connect(dsn) as other:
        # A maintenance-level holder: with no maintenance wait, VALIDATE fails on its lock.
        other.execute("LOCK TABLE users IN SHARE UPDATE EXCLUSIVE MODE")
        r = online("add-check", "users", "hits_nonneg", "hits >= 0",
                   "--lock-timeout", "50", "--max-retries", "2",
                   "--maintenance-wait", "0")
        assert r.code == 5, r.err
    r = online("add-check", "users", "hits_nonneg", "hits >= 0")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert _constraint(db, "hits_nonneg")[1] is True


def test_rollback_drops_the_constraint(db, online):
    create_users(db, 10)
    before = schema_snapshot(db)
    assert online("add-check", "users", "c1", "hits < 1000000").code == 0
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    assert online("rollback", str(job), "--confirm").code == 0
    assert schema_snapshot(db) == before


def test_dry_run_shows_two_transactions_and_their_locks(db, online):
    create_users(db, 10)
    r = online("add-check", "users", "c1", "hits >= 0", "--dry-run")
    assert r.code == 0, r.err
    assert "lock: ACCESS EXCLUSIVE" in r.out and "NOT VALID" in r.out
    assert "lock: SHARE UPDATE EXCLUSIVE" in r.out and "VALIDATE CONSTRAINT" in r.out
    assert "outside a transaction" not in r.out
    assert _constraint(db, "c1") is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "c", "true"], 3, "does not exist"),
    (["users", "c", "nope > 0"], 2, "bad CHECK expression"),
    (["users", "c", "hits + 1"], 2, "bad CHECK expression"),
    (["users", "c", "true); drop table users; --"], 2, "CHECK expression"),
    (["users", "c", "(select true)"], 2, "subquery"),
    (['"users; drop table users"', "c", "true"], 3, "does not exist"),
    (["users", "existing", "true"], 3, "already exists"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    create_users(db, 10)
    db.execute("ALTER TABLE users ADD CONSTRAINT existing CHECK (hits > -10)")
    before = schema_snapshot(db)
    r = online("add-check", *args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before


def test_expressions_with_percent_signs_run_verbatim(db, online):
    create_users(db, 50)
    r = online("add-check", "users", "email_shape", "email LIKE '%@%' AND id % 1 = 0")
    assert r.code == 0, r.err
    assert _constraint(db, "email_shape") == (
        "CHECK (((email ~~ '%@%'::text) AND ((id % (1)::bigint) = 0)))", True)
