"""rename-column on a real server: both names work during the change, under load, resumable."""

from __future__ import annotations

import signal
from typing import Any

import psycopg
from psycopg import sql

from pgonline.devtools.workload import Workload
from pgonline.engine.change import run_command
from pgonline.engine.plan import Phase
from tests.conftest import spawn_online
from tests.support.column_changes import (
    SLOW_BATCHES,
    assert_app_never_stalled,
    assert_no_lost_update,
    job_status,
    run_phases_under_load,
    trigger_names,
    wait_for_checkpoint,
)
from tests.support.tables import columns, create_users, schema_snapshot

ROWS = 10_000


def emails(db: psycopg.Connection[Any], column: str, ids: list[int]) -> list[Any]:
    query = sql.SQL("SELECT {} FROM users WHERE id = ANY(%s) ORDER BY id").format(
        sql.Identifier(column))
    return [r[0] for r in db.execute(query, [ids]).fetchall()]


def test_old_and_new_application_code_both_work_between_phases_under_load(db, dsn):
    create_users(db, ROWS)
    db.execute("CREATE INDEX users_email ON users (email)")
    old_app = psycopg.connect(dsn, autocommit=True)
    new_app = psycopg.connect(dsn, autocommit=True)
    checks: dict[str, Any] = {}

    async def between(phase: Phase | None, w: Workload) -> None:
        if phase is Phase.EXPAND:
            # Old code writes the old name; the trigger mirrors it into the new one.
            old_app.execute("UPDATE users SET email = 'old@app' WHERE id = 1")
            old_app.execute("INSERT INTO users (id, email) VALUES (-1, 'inserted@old')")
            checks["expand"] = db.execute(
                "SELECT contact FROM users WHERE id IN (-1, 1) ORDER BY id").fetchall()
        if phase is Phase.BACKFILL:
            # Rolling deploy: both versions run side by side on the same rows.
            new_app.execute("UPDATE users SET contact = 'new@app' WHERE id = 2")
            new_app.execute("INSERT INTO users (id, contact) VALUES (-2, 'inserted@new')")
            old_app.execute("UPDATE users SET email = 'old-again@app' WHERE id = 3")
            checks["backfill"] = db.execute(
                "SELECT id, email, contact FROM users WHERE id IN (-2, 2, 3) ORDER BY id").fetchall()
            checks["diverged"] = db.execute(
                "SELECT count(*) FROM users WHERE email IS DISTINCT FROM contact").fetchone()

    w = run_phases_under_load(dsn, lambda c: _rename_column(c, "users", "email", "contact"),
                              max_id=ROWS, write_ratio=0.5, insert_ratio=0.05, between=between)
    old_app.close()
    assert_app_never_stalled(w)
    assert_no_lost_update(db, w, "users")
    assert checks["expand"] == [("inserted@old",), ("old@app",)]
    assert checks["backfill"] == [(-2, "inserted@new", "inserted@new"), (2, "new@app", "new@app"),
                                  (3, "old-again@app", "old-again@app")]
    assert checks["diverged"] == (0,)
    # After the contract phase only the new name is left, with the data and the index.
    cols = columns(db, "users")
    assert "email" not in cols and cols["contact"] == ("text", False, None)
    assert emails(db, "contact", [4, 5]) == ["user4@example.com", "user5@example.com"]
    assert db.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'users_email'").fetchone(
        ) == ("CREATE INDEX users_email ON public.users USING btree (contact)",)
    assert new_app.execute("SELECT contact FROM users WHERE id = 2").fetchone() == ("new@app",)
    new_app.close()
    assert trigger_names(db, "users") == []


def test_renaming_the_serial_primary_key_keeps_ids_coming(db, online):
    create_users(db, 3000)
    for phase in ("expand", "backfill", "contract"):
        r = online("rename-column", "users", "id", "user_id", "--phase", phase)
        assert r.code == 0, r.err
    cols = columns(db, "users")
    assert "id" not in cols
    assert cols["user_id"] == ("bigint", True, "nextval('users_id_seq'::regclass)")
    assert db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'users_pkey'"
    ).fetchone() == ("PRIMARY KEY (user_id)",)
    assert db.execute("SELECT pg_get_serial_sequence('users', 'user_id')").fetchone() == (
        "public.users_id_seq",)
    assert db.execute("INSERT INTO users (email) VALUES ('x') RETURNING user_id").fetchone() == (
        3001,)
    assert db.execute("SELECT count(*) FROM users WHERE email LIKE 'user%'").fetchone() == (3000,)


def test_two_way_sync_copies_whichever_name_was_written(db, online):
    db.execute("CREATE TABLE docs (id int PRIMARY KEY, body json NOT NULL DEFAULT '{}')")
    db.execute("INSERT INTO docs SELECT g, json_build_object('n', g) FROM generate_series(1, 50) g")
    assert online("rename-column", "docs", "body", "payload", "--phase", "expand").code == 0
    db.execute("INSERT INTO docs (id) VALUES (100)")  # neither given: the old default
    db.execute("""INSERT INTO docs (id, payload) VALUES (101, '{"via": "new"}')""")
    db.execute("""UPDATE docs SET body = '{"via": "old"}' WHERE id = 1""")
    db.execute("""UPDATE docs SET payload = '{"via": "new"}' WHERE id = 2""")
    rows = db.execute("SELECT id, body::text, payload::text FROM docs WHERE id IN (1, 2, 100, 101)"
                      " ORDER BY id").fetchall()
    assert rows == [(1, '{"via": "old"}', '{"via": "old"}'), (2, '{"via": "new"}', '{"via": "new"}'),
                    (100, "{}", "{}"), (101, '{"via": "new"}', '{"via": "new"}')]
    r = online("rename-column", "docs", "body", "payload")
    # A run of all phases stops before the cut-over: code using "body" still works.
    assert r.code == 0, r.err
    assert "job 1 resumed and paused" in r.out and "no instance still uses" in r.out
    assert db.execute("""UPDATE docs SET body = '{"via": "old again"}' WHERE id = 1""").rowcount == 1
    assert "body" in columns(db, "docs")
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    assert "body" not in columns(db, "docs")
    assert columns(db, "docs")["payload"] == ("json", True, "'{}'::json")
    assert db.execute("SELECT payload::text FROM docs WHERE id = 3").fetchone() == ('{"n" : 3}',)


def test_dry_run_shows_phases_and_locks_and_changes_nothing(db, online):
    create_users(db, 10)
    snap = schema_snapshot(db)
    r = online("rename-column", "users", "email", "contact", "--dry-run")
    assert r.code == 0, r.err
    for text in ("[expand] add-shadow-column", "lock: ACCESS EXCLUSIVE", "[expand] install-sync-trigger",
                 "lock: SHARE ROW EXCLUSIVE", "[backfill] backfill", "[contract] cutover",
                 "[contract] drop-old-column", "deploy the application version",
                 "waits for you: deploy the application version that uses"):
        assert text in r.out, text
    assert schema_snapshot(db) == snap


def test_killed_backfill_resumes_and_rollback_restores_the_original_schema(db, dsn, online):
    create_users(db, 20_000)
    snap = schema_snapshot(db)
    proc = spawn_online(["rename-column", "users", "email", "contact", *SLOW_BATCHES], dsn)
    wait_for_checkpoint(db, 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    r = online("resume", "1", "--phase", "backfill")
    assert r.code == 0, r.err
    assert job_status(db) == "paused"
    assert db.execute("SELECT count(*) FROM users WHERE contact IS DISTINCT FROM email"
                      ).fetchone() == (0,)
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == snap
    assert trigger_names(db, "users") == []


def test_bad_input_is_refused_with_a_clear_error_and_nothing_changes(db, online):
    create_users(db, 20)
    db.execute("CREATE VIEW user_emails AS SELECT email FROM users")
    db.execute("CREATE TABLE notes (id int PRIMARY KEY, body text CHECK (body <> ''))")
    snap = schema_snapshot(db)
    cases = [
        (("users", "nope", "x"), 3, "does not exist"),
        (("users", "hits", "email"), 3, "already exists"),
        (("users", "hits", "hits"), 3, "already called that"),
        (("users", "email", "a.b"), 2, "plain name"),
        (("users", "email", "contact"), 3, "view user_emails"),
        (("notes", "body", "text"), 3, "check constraint"),
    ]
    for args, code, text in cases:
        r = online("rename-column", *args)
        assert (r.code, text in r.err) == (code, True), (args, r.err)
        assert r.err.startswith("error: ")
        assert schema_snapshot(db) == snap


def _rename_column(ctx, *values, **options):
    """``online rename-column VALUES...`` in-process."""
    return run_command(ctx, "rename-column", *values, **options)
