"""The fill trigger: while add-column / set-not-null --backfill runs, rows written by code
that does not know the column get the backfill value, and no NOT NULL constraint (not even
NOT VALID) can reject the application's writes."""

from __future__ import annotations

import time

import anyio
import psycopg
import pytest
from pgonline.strategies._ddl import not_null_steps

from pgonline.catalog.tables import table_facts
from pgonline.connection import connection
from pgonline.sql.identifiers import QualifiedName
from tests.support.old_app import OldApp, helper_objects
from tests.support.tables import columns, create_users, not_null_step_ids, schema_snapshot

ROWS = 20_000
SLOW = ["--batch-size", "500", "--min-batch-size", "500", "--max-batch-size", "500",
        "--sleep-ms", "20", "--lock-timeout", "500"]


def _not_null_validated(db, column: str) -> bool:
    if db.info.server_version >= 180000:
        row = db.execute("SELECT convalidated FROM pg_constraint WHERE conrelid = 'users'::regclass"
                         " AND contype = 'n' AND conkey = ARRAY[(SELECT attnum FROM pg_attribute"
                         " WHERE attrelid = 'users'::regclass AND attname = %s)]::int2[]",
                         [column]).fetchone()
        return row == (True,) and columns(db, "users")[column][1]
    return bool(columns(db, "users")[column][1])


def _job_waits_at_the_trigger_drop(db, r, column: str) -> None:
    """A run of all phases stopped before the gated trigger drop and said why."""
    assert r.code == 0, r.err
    assert f"deploy application code that sets {column}" in r.out + r.err
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("paused",)
    assert db.execute("SELECT status FROM pgonline.steps WHERE step_id = 'drop-fill-trigger'"
                      ).fetchone() == ("pending",)
    assert _not_null_validated(db, column)
    assert len(helper_objects(db)) == 2  # the trigger and its function


def test_old_app_inserting_without_the_column_during_add_column_backfill_not_null(db, dsn,
                                                                                  online):
    create_users(db, ROWS)
    t0 = time.monotonic()
    with OldApp(dsn, "INSERT INTO users (email) VALUES ('app' || %(n)s || '@example.com')",
                max_id=ROWS) as app:
        r = online("add-column", "users", "token", "text", "--backfill", "md5(email)",
                   "--not-null", *SLOW)
        _job_waits_at_the_trigger_drop(db, r, "token")
        # NOT NULL is validated and the old code still inserts without the column.
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    assert app.stats.errors == []
    assert app.stats.ops / elapsed >= 50, (app.stats.ops, elapsed)
    # The new code (which writes the column) is deployed: now the contract may finish.
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    inserted = db.execute("SELECT count(*) FROM users WHERE email LIKE 'app%'").fetchone()[0]
    assert inserted >= 20
    assert db.execute("SELECT count(*) FROM users WHERE token IS DISTINCT FROM md5(email)"
                      ).fetchone() == (0,)
    assert _not_null_validated(db, "token")
    assert helper_objects(db) == []
    assert [s for (s,) in db.execute("SELECT step_id FROM pgonline.steps ORDER BY ord")] == [
        "add-column", "backfill", "vacuum", *not_null_step_ids(db), "drop-fill-trigger"]


def test_old_app_writing_nulls_during_set_not_null_backfill_gets_the_value(db, dsn, online):
    create_users(db, ROWS)
    db.execute("UPDATE users SET email = NULL WHERE id % 3 = 0")
    t0 = time.monotonic()
    with OldApp(dsn, "INSERT INTO users (hits) VALUES (%(n)s)", max_id=ROWS) as app:
        r = online("set-not-null", "users", "email", "--backfill", "'user' || id || '@filled'",
                   *SLOW)
        _job_waits_at_the_trigger_drop(db, r, "email")
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    assert app.stats.errors == []
    assert app.stats.ops / elapsed >= 50, (app.stats.ops, elapsed)
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM users WHERE id > %s", [ROWS]).fetchone()[0] >= 20
    # Old rows filled by the backfill, new ones by the trigger: the same value.
    assert db.execute("SELECT count(*) FROM users WHERE email LIKE '%@filled'"
                      " AND email <> 'user' || id || '@filled'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM users WHERE id %% 3 = 0 AND id <= %s"
                      " AND email = 'user' || id || '@filled'", [ROWS]).fetchone() == (ROWS // 3,)
    assert _not_null_validated(db, "email")
    assert helper_objects(db) == []


def test_add_column_with_a_default_does_not_wait_before_dropping_the_trigger(db, online):
    create_users(db, 100)
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)",
               "--default", "'none'", "--not-null")
    assert r.code == 0, r.err
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("done",)
    assert helper_objects(db) == []


def test_dry_run_shows_the_trigger_in_the_add_column_step_and_its_drop(db, online):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null",
               "--dry-run")
    assert r.code == 0, r.err
    expand = r.out[r.out.index("[expand] add-column"):r.out.index("[backfill] backfill")]
    assert "lock: ACCESS EXCLUSIVE" in expand and "in a transaction" in expand
    assert 'ADD COLUMN "token" text;' in expand and "CREATE TRIGGER" in expand
    assert 'NEW."token" := (md5(new.email))' in expand
    assert "[contract] drop-fill-trigger" in r.out
    assert r.out.index("drop-fill-trigger") > r.out.index(not_null_step_ids(db)[-1])
    assert "waits for you: deploy application code that sets token" in r.out
    assert schema_snapshot(db) == before and helper_objects(db) == []


def test_dry_run_of_set_not_null_backfill_shows_the_trigger_step_and_its_lock(db, online):
    create_users(db, 10)
    r = online("set-not-null", "users", "email", "--backfill", "'x'", "--dry-run")
    assert r.code == 0, r.err
    step = r.out[r.out.index("[expand] install-fill-trigger"):r.out.index("[backfill] backfill")]
    assert "lock: SHARE ROW EXCLUSIVE" in step and "CREATE TRIGGER" in step
    assert "[contract] drop-fill-trigger" in r.out
    assert helper_objects(db) == []


@pytest.mark.parametrize("command", [
    ["add-column", "users", "token", "text"],
    ["set-not-null", "users", "email"],
])
@pytest.mark.parametrize(("expr", "message"), [
    ("count(*)", "aggregate functions are not allowed"),
    ("sum(id) over ()", "window functions are not allowed"),
    ("generate_series(1,2)", "set-returning functions are not allowed"),
    ("(select max(id) from users)", "subquery"),
])
def test_expression_that_cannot_be_evaluated_per_row_is_refused_before_anything_changes(
        db, online, command, expr, message):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online(*command, "--backfill", expr)
    assert r.code == 2, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before and helper_objects(db) == []


def test_rollback_after_expand_drops_trigger_function_and_column(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null",
               "--phase", "expand")
    assert r.code == 0, r.err
    assert len(helper_objects(db)) == 2
    db.execute("INSERT INTO users (email) VALUES ('early@x')")
    assert db.execute("SELECT token FROM users WHERE email = 'early@x'").fetchone() == (
        db.execute("SELECT md5('early@x')").fetchone()[0],)
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert helper_objects(db) == [] and schema_snapshot(db) == before
    db.execute("INSERT INTO users (email) VALUES ('late@x')")  # nothing left to fire


def test_rollback_of_set_not_null_after_expand_drops_the_trigger(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    assert online("set-not-null", "users", "email", "--backfill", "'x'",
                  "--phase", "expand").code == 0
    assert len(helper_objects(db)) == 2
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert helper_objects(db) == [] and schema_snapshot(db) == before


def test_backfill_value_null_for_some_rows_stops_before_any_constraint_then_resumes(db, online):
    create_users(db, 300)
    db.execute("UPDATE users SET email = NULL WHERE id <= 5")
    args = ["add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null"]
    r = online(*args)
    assert r.code == 10, (r.out, r.err)
    assert "5 rows" in r.err and "nothing is constrained yet" in r.err
    # No NOT NULL constraint, valid or not: the application's writes still succeed.
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass"
                      " AND (contype = 'n' AND conname LIKE '%token%' OR conname LIKE 'pgonline_nn%')"
                      ).fetchone() == (0,)
    db.execute("INSERT INTO users (email) VALUES (NULL)")
    # Fix the data, resume: the job completes and the trigger goes.
    db.execute("UPDATE users SET email = 'fixed' || id WHERE email IS NULL")
    r = online("resume", "1")
    _job_waits_at_the_trigger_drop(db, r, "token")
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM users WHERE token IS DISTINCT FROM md5(email)"
                      ).fetchone() == (0,)
    assert _not_null_validated(db, "token") and helper_objects(db) == []


def test_fill_trigger_runs_after_the_applications_own_before_triggers(db, online):
    create_users(db, 50)
    db.execute("CREATE FUNCTION lower_email() RETURNS trigger LANGUAGE plpgsql AS $$"
               " BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $$")
    db.execute("CREATE TRIGGER normalize BEFORE INSERT OR UPDATE ON users"
               " FOR EACH ROW EXECUTE FUNCTION lower_email()")
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)",
               "--phase", "expand")
    assert r.code == 0, r.err
    db.execute("INSERT INTO users (email) VALUES ('MiXeD@Example.COM')")
    assert db.execute("SELECT token = md5('mixed@example.com') FROM users"
                      " WHERE email = 'mixed@example.com'").fetchone() == (True,)


def test_a_column_named_like_a_plpgsql_variable_is_read_from_the_row(db, online):
    db.execute('CREATE TABLE users (id int PRIMARY KEY, found text, "Tg_Op" text)')
    db.execute("INSERT INTO users SELECT g, 'f' || g, 'o' FROM generate_series(1, 20) g")
    r = online("add-column", "users", "v", "text", "--backfill", 'found || "Tg_Op"',
               "--not-null", "--phase", "expand")
    assert r.code == 0, r.err
    db.execute("INSERT INTO users (id, found, \"Tg_Op\") VALUES (99, 'a', 'b')")
    assert db.execute("SELECT v FROM users WHERE id = 99").fetchone() == ("ab",)



def _table_facts(dsn: str):
    async def go():
        async with connection(dsn) as conn:
            return await table_facts(conn, QualifiedName("public", "users"))

    return anyio.run(go)


def test_a_validate_that_meets_a_null_says_the_not_valid_constraint_stays_and_how_out(db, dsn):
    # The instant between check-nulls and the NOT VALID constraint, replayed step by
    # step: a NULL got in just before the constraint.
    create_users(db, 10)
    major = db.info.server_version // 10000
    steps = {s.id: s for s in not_null_steps(_table_facts(dsn), "email", major=major)}
    add, validate = (("add-not-null", "validate-not-null") if major >= 18
                     else ("add-check", "validate-check"))
    db.execute(steps["check-nulls"].sql)
    db.execute("UPDATE users SET email = NULL WHERE id = 3")
    db.execute(steps[add].sql)
    with pytest.raises(psycopg.IntegrityError) as err:
        db.execute(steps[validate].sql)
    detail = err.value.diag.message_detail or ""
    assert "stays NOT VALID and rejects writes of NULL" in detail
    assert "resume the job" in detail and "roll the job back" in detail


def test_an_expression_reading_a_generated_column_is_refused(db, online):
    db.execute("CREATE TABLE users (id int PRIMARY KEY, email text,"
               " domain text GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED)")
    db.execute("INSERT INTO users (id, email) VALUES (1, 'a@b')")
    before = schema_snapshot(db)
    r = online("add-column", "users", "d2", "text", "--backfill", "upper(domain)")
    assert r.code == 2, (r.out, r.err)
    assert 'generated column "domain"' in r.err
    r = online("add-column", "users", "d2", "text", "--backfill", "upper(email)")
    assert r.code == 0, r.err
    assert schema_snapshot(db) != before
