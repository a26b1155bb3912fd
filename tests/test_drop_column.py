"""drop-column on a real server: the dependents listing, --confirm, locks, live traffic."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import psycopg

from pgonline.devtools.workload import Workload
from pgonline.engine.change import run_command
from tests.support.column_changes import assert_app_never_stalled, ctx, job_status
from tests.support.tables import columns, create_users, schema_snapshot


def _with_dependents(db: psycopg.Connection[Any]) -> None:
    create_users(db, 100)
    db.execute("ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email)")
    db.execute("CREATE INDEX users_lower_email ON users (lower(email))")
    db.execute("CREATE VIEW user_emails AS SELECT id, email FROM users")
    db.execute("CREATE TABLE invites (id int PRIMARY KEY, email text REFERENCES users (email))")


def test_without_confirm_it_lists_every_dependent_and_changes_nothing(db, online):
    _with_dependents(db)
    snap = schema_snapshot(db)
    r = online("drop-column", "users", "email")
    assert r.code == 4, r.err
    for text in ("discards its data for good", "unique constraint users_email_key on table users",
                 "index users_lower_email", "view user_emails",
                 "referencing foreign key invites_email_fkey on table invites", "--confirm"):
        assert text in r.err, text
    assert schema_snapshot(db) == snap
    r = online("drop-column", "users", "hits")
    assert r.code == 4 and "no dependent objects" in r.err


def test_a_dry_run_without_confirm_shows_the_plan_and_says_confirm_will_be_needed(db, online):
    _with_dependents(db)
    snap = schema_snapshot(db)
    r = online("drop-column", "users", "email", "--dry-run")
    assert r.code == 0, r.err
    assert "without --confirm this command refuses" in r.out
    assert 'DROP COLUMN "email" CASCADE' in r.out and "view user_emails" in r.out
    assert schema_snapshot(db) == snap
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)


def test_confirm_drops_the_column_and_cascades_only_when_a_dependent_needs_it(db, online):
    _with_dependents(db)
    r = online("drop-column", "users", "hits", "--confirm", "--dry-run")
    assert r.code == 0, r.err
    assert "[contract] drop-column" in r.out and "lock: ACCESS EXCLUSIVE" in r.out
    assert 'ALTER TABLE "public"."users" DROP COLUMN "hits"\n' in r.out + "\n"
    assert "CASCADE" not in r.out
    r = online("drop-column", "users", "email", "--confirm", "--dry-run")
    assert 'DROP COLUMN "email" CASCADE' in r.out
    assert "email" in columns(db, "users")
    r = online("drop-column", "users", "email", "--confirm")
    assert r.code == 0, r.err
    assert "email" not in columns(db, "users")
    assert db.execute("SELECT to_regclass('user_emails'), to_regclass('users_lower_email')"
                      ).fetchone() == (None, None)
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'invites_email_fkey'"
                      ).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM users").fetchone() == (100,)


def test_phase_split_runs_the_drop_only_in_the_contract_phase(db, online):
    create_users(db, 100)
    r = online("drop-column", "users", "email", "--confirm", "--phase", "expand")
    assert r.code == 0, r.err
    assert "email" in columns(db, "users")
    assert job_status(db) == "paused"
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    assert "email" not in columns(db, "users")
    assert job_status(db) == "done"


def test_dropping_under_load_never_stalls_the_application(db, dsn):
    create_users(db, 20_000)

    async def scenario() -> Workload:
        async with Workload(dsn, clients=4, max_id=20_000, write_ratio=0.5, insert_ratio=0.05) as w:
            await anyio.sleep(0.3)
            await _drop_column(ctx(dsn), "users", "email", confirm=True)
            await anyio.sleep(0.3)
        return w

    w = anyio.run(scenario)
    assert_app_never_stalled(w)
    assert "email" not in columns(db, "users")


def test_a_long_reader_makes_the_drop_retry_not_queue_other_queries(db, dsn, online):
    create_users(db, 100)
    ready = threading.Event()

    def long_reader() -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT count(*) FROM users")  # ACCESS SHARE until rollback
            ready.set()
            time.sleep(1.5)
            conn.rollback()

    t = threading.Thread(target=long_reader)
    t.start()
    ready.wait(5)
    t0 = time.monotonic()
    r = online("drop-column", "users", "email", "--confirm", "--lock-timeout", "100")
    elapsed = time.monotonic() - t0
    t.join()
    assert r.code == 0, r.err
    assert elapsed >= 1.0  # it waited for the reader by retrying under lock_timeout
    assert "email" not in columns(db, "users")


def test_bad_input_is_refused_with_a_clear_error(db, online):
    create_users(db, 10)
    snap = schema_snapshot(db)
    for args, code, text in [
        (("users", "nope", "--confirm"), 3, "does not exist"),
        (("nowhere", "email", "--confirm"), 3, "does not exist"),
        (("users", 'em"ail', "--confirm"), 2, "quote"),
    ]:
        r = online("drop-column", *args)
        assert (r.code, text in r.err) == (code, True), (args, r.err)
        assert schema_snapshot(db) == snap


def _drop_column(ctx, *values, **options):
    """``online drop-column VALUES...`` in-process."""
    return run_command(ctx, "drop-column", *values, **options)
