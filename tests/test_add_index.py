"""add-index on a real server: CONCURRENTLY under load, restart after a crash, refusals."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.conftest import spawn_online
from tests.support.online_load import assert_stayed_online, crash, online_under_load, wait_for
from tests.support.tables import create_users, schema_snapshot


def _index(db, name):
    return db.execute(
        "SELECT pg_get_indexdef(indexrelid), indisvalid FROM pg_index"
        " WHERE indexrelid = to_regclass(%s)", [name]).fetchone()


def test_builds_partial_expression_index_with_default_name(db, online):
    create_users(db, 500)
    r = online("add-index", "users", "created_at", "--expression", "lower(email)",
               "--where", "hits >= 0")
    assert r.code == 0, r.err
    definition, valid = _index(db, "users_created_at_lower_idx")
    assert valid
    assert definition == ("CREATE INDEX users_created_at_lower_idx ON public.users USING btree "
                          "(created_at, lower(email)) WHERE (hits >= 0)")


def test_unique_gin_and_custom_name(db, online):
    create_users(db, 200)
    db.execute("ALTER TABLE users ADD COLUMN tags text[] DEFAULT '{a,b}'")
    assert online("add-index", "users", "email", "--unique", "--name", "Users_Email_U").code == 0
    assert _index(db, '"Users_Email_U"') is None  # unquoted names fold to lower case
    assert _index(db, "users_email_u")[0].startswith("CREATE UNIQUE INDEX users_email_u ")
    r = online("add-index", "users", "tags", "--using", "gin")
    assert r.code == 0, r.err
    assert "USING gin (tags)" in _index(db, "users_tags_idx")[0]


def test_long_names_are_hashed_not_truncated(db, online):
    col = "c" * 60
    db.execute(f"CREATE TABLE t (id int PRIMARY KEY, {col} int)")
    r = online("add-index", "t", col)
    assert r.code == 0, r.err
    (name,) = db.execute("SELECT indexrelid::regclass::text FROM pg_index"
                         " WHERE indrelid = 't'::regclass AND NOT indisprimary").fetchone()
    assert len(name) == 63 and name.startswith("t_ccc")


def test_writes_continue_during_the_build(db, dsn):
    create_users(db, 20_000)
    code, stats = online_under_load(dsn, "add-index", "users", "email", "created_at",
                                    max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert _index(db, "users_email_created_at_idx")[1] is True


def test_invalid_leftover_of_a_failed_build_is_dropped_and_rebuilt(db, online):
    create_users(db, 300)
    db.execute("UPDATE users SET email = 'dup' WHERE id <= 2")
    with pytest.raises(Exception, match="could not create unique index"):
        db.execute("CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email)")
    assert _index(db, "users_email_idx")[1] is False
    dry = online("add-index", "users", "email", "--dry-run")
    assert "INVALID index" in dry.out and "DROP INDEX CONCURRENTLY" not in dry.out
    r = online("add-index", "users", "email")
    assert r.code == 0, r.err
    definition, valid = _index(db, "users_email_idx")
    assert valid and "UNIQUE" not in definition


def test_an_index_another_session_is_building_is_refused_and_left_alone(db, dsn, online):
    create_users(db, 300)
    errors: list[BaseException] = []

    def build() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as builder:
                builder.execute("CREATE INDEX CONCURRENTLY users_email_idx ON users (email)")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    with psycopg.connect(dsn) as writer:
        # The open write makes the other session's CREATE INDEX CONCURRENTLY wait
        # after it registered the (still INVALID) index: a build in progress.
        writer.execute("UPDATE users SET hits = hits + 1 WHERE id = 1")
        builder = threading.Thread(target=build)
        builder.start()
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p"
                     " JOIN pg_class c ON c.oid = p.index_relid"
                     " WHERE c.relname = 'users_email_idx')")
        r = online("add-index", "users", "email")
        assert r.code != 0
        assert "is being built right now by backend" in r.err, r.err
        assert "Traceback" not in r.err
        # Nothing of ours touched it: still their build, still in progress.
        assert _index(db, "users_email_idx")[1] is False
        writer.rollback()
    builder.join(60)
    assert not errors
    assert _index(db, "users_email_idx")[1] is True


def test_rerun_after_a_crash_mid_build_completes(db, dsn, online):
    create_users(db, 2000)
    with psycopg.connect(dsn) as writer:
        # An open write transaction: CREATE INDEX CONCURRENTLY waits for it
        # after registering the (still invalid) index.
        writer.execute("UPDATE users SET hits = hits + 1 WHERE id = 1")
        proc = spawn_online(["add-index", "users", "email", "--lock-timeout", "60000"], dsn)
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name ="
                     " 'pgonline' AND query LIKE 'CREATE INDEX CONCURRENTLY%'"
                     " AND wait_event_type = 'Lock')")
        crash(proc, db)
        writer.rollback()
    assert _index(db, "users_email_idx")[1] is False
    r = online("add-index", "users", "email")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert _index(db, "users_email_idx")[1] is True
    assert db.execute("SELECT status FROM pgonline.jobs").fetchall() == [("done",)]


def test_dry_run_shows_lock_and_non_transactional_step(db, online):
    create_users(db, 10)
    r = online("add-index", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    assert "lock: SHARE UPDATE EXCLUSIVE" in r.out and "outside a transaction" in r.out
    assert 'CREATE INDEX CONCURRENTLY "users_email_idx" ON "public"."users" ("email")' in r.out
    assert _index(db, "users_email_idx") is None


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "email"], 3, "does not exist"),
    (["users", "nope"], 3, "column \"nope\" does not exist"),
    (["users", '"x; drop table users"'], 3, "does not exist"),
    (['"users; drop table users"', "email"], 3, "does not exist"),
    (["users", "email", "--where", "1); drop table users; --"], 2, "WHERE predicate"),
    (["users", "email", "--where", "nope > 1"], 2, "bad WHERE predicate"),
    (["users", "email", "--using", "nosuch"], 2, "unknown index access method"),
    (["users", "--expression", "random()"], 2, "IMMUTABLE"),
    (["users", "email", "--unique"], 4, "duplicate value groups"),
    (["users", "id", "--name", "users_pkey"], 3, "already exists"),
    (["users", "email", "--name", "users"], 3, "relation \"public\".\"users\" already exists"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    create_users(db, 100)
    db.execute("UPDATE users SET email = 'same' WHERE id IN (3, 4)")
    before = schema_snapshot(db)
    r = online("add-index", *args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err
    assert r.err.startswith("error: ") and "Traceback" not in r.err
    assert schema_snapshot(db) == before


def test_rollback_drops_the_index_outside_a_transaction(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    assert online("add-index", "users", "email").code == 0
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before
