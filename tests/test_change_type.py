"""change-type on a real server: in place, expand/contract under load, resume, rollback, refusals."""

from __future__ import annotations

import signal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgonline.devtools.workload import Workload
from pgonline.engine.change import run_command
from pgonline.engine.plan import Phase
from pgonline.sql.names import helper_column_name, helper_name
from tests.conftest import spawn_online
from tests.support.column_changes import (
    SLOW_BATCHES,
    assert_app_never_stalled,
    assert_no_lost_update,
    job_status,
    run_phases_under_load,
    trigger_names,
    wait_for_checkpoint,
    without_prepared_statements,
)
from tests.support.tables import columns, create_users, schema_snapshot

ROWS = 10_000
# The helper names change-type derives for accounts.id (unique per table and column).
SYNC_TRIGGER = helper_name("zz_pgonline_sync", "public", "accounts", "id")
# A plain cast: inserts fire one trigger, updates the other only when id changes.
SYNC_TRIGGERS = sorted([SYNC_TRIGGER, helper_name("zz_pgonline_sync_update", "public",
                                                  "accounts", "id")])
SHADOW = helper_column_name("new", "public", "accounts", "id")


def create_accounts(db: psycopg.Connection[Any], rows: int) -> None:
    """An int4 serial primary key: the table that is about to run out of ids."""
    db.execute("""
        CREATE TABLE accounts (
            id serial PRIMARY KEY,
            hits integer NOT NULL DEFAULT 0,
            note text
        )""")
    db.execute("INSERT INTO accounts (note) SELECT 'n' || g FROM generate_series(1, %s) g", [rows])
    db.execute("ANALYZE accounts")


def relfilenode(db: psycopg.Connection[Any], table: str) -> int:
    row = db.execute("SELECT relfilenode FROM pg_class WHERE oid = %s::regclass", [table]).fetchone()
    assert row is not None
    return int(row[0])


def sequence_facts(db: psycopg.Connection[Any], table: str, column: str) -> tuple[Any, ...]:
    row = db.execute(
        "SELECT pg_get_serial_sequence(%s, %s), format_type(s.seqtypid, NULL), s.seqmax"
        "  FROM pg_sequence s WHERE s.seqrelid = pg_get_serial_sequence(%s, %s)::regclass",
        [table, column, table, column]).fetchone()
    assert row is not None
    return tuple(row)


def test_int_to_bigint_on_serial_primary_key_under_load_keeps_values_and_ids(db, dsn, monkeypatch):
    create_accounts(db, ROWS)
    before = db.execute("SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM accounts"
                        ).fetchone()
    without_prepared_statements(monkeypatch)
    seen: dict[str, Any] = {}

    async def between(phase: Phase | None, w: Workload) -> None:
        # After the expand phase the trigger already fills the shadow column
        # for every row the application inserts.
        if phase is Phase.EXPAND:
            seen["triggers"] = trigger_names(db, "accounts")
        seen[phase] = len(w.stats.inserted_ids)

    w = run_phases_under_load(
        dsn, lambda c: _change_type(c, "accounts", "id", "bigint"), max_id=ROWS,
        table="accounts", write_ratio=0.5, insert_ratio=0.05, between=between)

    assert_app_never_stalled(w)
    assert_no_lost_update(db, w, "accounts")
    assert seen["triggers"] == SYNC_TRIGGERS
    # The application inserted rows while the backfill ran (the trigger filled them).
    assert seen[Phase.BACKFILL] > seen[Phase.EXPAND]
    assert columns(db, "accounts")["id"] == ("bigint", True, "nextval('accounts_id_seq'::regclass)")
    assert set(columns(db, "accounts")) == {"id", "hits", "note"}
    assert trigger_names(db, "accounts") == []
    # The primary key is the same constraint, now on the bigint column.
    assert db.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'accounts'::regclass AND contype = 'p'").fetchall() == [
        ("accounts_pkey", "PRIMARY KEY (id)")]
    # Existing rows kept their ids, and rows inserted during every phase exist.
    after = db.execute("SELECT md5(string_agg(id || ':' || note, ',' ORDER BY id)) FROM accounts"
                       " WHERE id <= %s", [ROWS]).fetchone()
    assert after == before
    assert w.stats.inserted_ids
    found = db.execute("SELECT count(*) FROM accounts WHERE id = ANY(%s)",
                       [w.stats.inserted_ids]).fetchone()
    assert found == (len(w.stats.inserted_ids),)
    # The serial sequence followed the column and now reaches past 2^31 - 1.
    seq, seq_type, seq_max = sequence_facts(db, "accounts", "id")
    assert (seq, seq_type, seq_max) == ("public.accounts_id_seq", "bigint", 2**63 - 1)
    db.execute("SELECT setval('accounts_id_seq', 2147483647)")
    assert db.execute("INSERT INTO accounts DEFAULT VALUES RETURNING id").fetchone() == (2147483648,)
    assert db.execute("SELECT status FROM pgonline.jobs").fetchall() == [("done",)]


def test_changing_a_column_the_application_updates_loses_no_write(db, dsn, monkeypatch):
    create_users(db, 5000)
    without_prepared_statements(monkeypatch)
    ops: dict[Phase | None, int] = {}

    async def between(phase: Phase | None, w: Workload) -> None:
        ops[phase] = sum(w.stats.increments.values())

    w = run_phases_under_load(dsn, lambda c: _change_type(c, "users", "hits", "bigint"),
                              max_id=5000, write_ratio=0.7, between=between)
    assert_app_never_stalled(w)
    assert ops[Phase.BACKFILL] > ops[Phase.EXPAND]  # updates landed during the backfill
    # Every increment made while the trigger synced the shadow column survived the swap.
    assert_no_lost_update(db, w, "users")
    assert columns(db, "users")["hits"] == ("bigint", True, "0")


def test_widening_varchar_and_numeric_is_catalog_only_without_rewrite(db, online):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, name varchar(20), price numeric(8,2))")
    db.execute("CREATE INDEX items_name ON items (name)")
    db.execute("INSERT INTO items SELECT g, 'item' || g, g / 7.0 FROM generate_series(1, 500) g")
    node = relfilenode(db, "items")
    for column, new_type in (("name", "varchar(200)"), ("price", "numeric(12,2)"),
                             ("name", "varchar"), ("name", "text")):
        r = online("change-type", "items", column, new_type, "--lock-timeout", "500")
        assert r.code == 0, r.err
    cols = columns(db, "items")
    assert cols["name"][0] == "text" and cols["price"][0] == "numeric(12,2)"
    assert relfilenode(db, "items") == node  # the table was not rewritten
    assert db.execute("SELECT step_id FROM pgonline.steps").fetchall() == [("alter-type",)] * 4
    # Going back would narrow the type, a rewrite under ACCESS EXCLUSIVE: rollback refuses.
    r = online("rollback", "4", "--confirm")
    assert r.code != 0 and "which converts online" in r.err
    assert columns(db, "items")["name"][0] == "text"
    # A narrowing change is not in place: it takes the shadow-column path.
    r = online("change-type", "items", "price", "numeric(12,3)", "--dry-run")
    assert r.code == 0 and "expand/contract" in r.out and "add-shadow-column" in r.out


def test_using_expression_converts_existing_rows_and_rows_written_between_phases(db, online):
    db.execute("CREATE TABLE prices (id int PRIMARY KEY, amount text NOT NULL)")
    db.execute("INSERT INTO prices SELECT g, (g * 1.5)::text FROM generate_series(1, 3000) g")
    args = ["change-type", "prices", "amount", "integer", "--using", "round(amount::numeric * 100)"]
    assert online(*args, "--phase", "expand").code == 0
    db.execute("INSERT INTO prices VALUES (5001, '2.25')")
    assert online(*args, "--phase", "backfill").code == 0
    db.execute("UPDATE prices SET amount = '9.99' WHERE id = 1")
    db.execute("INSERT INTO prices VALUES (5002, '0.01')")
    r = online(*args, "--phase", "contract")
    assert r.code == 0, r.err
    assert columns(db, "prices")["amount"] == ("integer", True, None)
    assert db.execute("SELECT amount FROM prices WHERE id IN (1, 2, 5001, 5002) ORDER BY id"
                      ).fetchall() == [(999,), (300,), (225,), (1,)]
    assert db.execute("SELECT count(*) FROM prices WHERE amount IS NULL").fetchone() == (0,)


def test_an_update_to_an_equal_but_different_value_between_phases_reaches_the_new_column(
        db, online):
    # numeric 1.5 = 1.50, but their text differs: the UPDATE trigger, which
    # skips updates that leave the column as it was, must not skip this one.
    db.execute("CREATE TABLE prices (id int PRIMARY KEY, amount numeric NOT NULL, hits int)")
    db.execute("INSERT INTO prices SELECT g, g * 1.5, 0 FROM generate_series(1, 3000) g")
    args = ["change-type", "prices", "amount", "text"]
    assert online(*args, "--phase", "expand").code == 0
    assert online(*args, "--phase", "backfill").code == 0
    db.execute("UPDATE prices SET amount = 1.50 WHERE id = 1")  # equal to 1.5
    db.execute("UPDATE prices SET hits = hits + 1 WHERE id = 2")  # amount untouched
    db.execute("UPDATE prices SET amount = 7 WHERE id = 3")
    r = online(*args, "--phase", "contract")
    assert r.code == 0, r.err
    assert columns(db, "prices")["amount"] == ("text", True, None)
    assert db.execute("SELECT amount FROM prices WHERE id IN (1, 2, 3, 4) ORDER BY id"
                      ).fetchall() == [("1.50",), ("3.0",), ("7",), ("6.0",)]


def test_phases_run_separately_and_resume_continues_the_same_job(db, online):
    create_accounts(db, 2000)
    db.execute("CREATE INDEX accounts_note ON accounts (note) WHERE hits = 0")
    r = online("change-type", "accounts", "id", "bigint", "--phase", "expand")
    assert r.code == 0, r.err
    assert job_status(db) == "paused"
    assert SHADOW in columns(db, "accounts")
    assert trigger_names(db, "accounts") == SYNC_TRIGGERS
    assert online("resume", "1", "--phase", "backfill").code == 0
    assert db.execute(sql.SQL("SELECT count(*) FROM accounts WHERE {} IS DISTINCT FROM id")
                      .format(sql.Identifier(SHADOW))).fetchone() == (0,)
    # Re-running the same command picks the paused job up instead of planning anew.
    r = online("change-type", "accounts", "id", "bigint")
    assert r.code == 0, r.err
    assert "resumed" in r.out
    assert db.execute("SELECT count(*) FROM pgonline.jobs").fetchone() == (1,)
    assert columns(db, "accounts")["id"][0] == "bigint"
    idx = db.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'accounts'"
                     " ORDER BY 1").fetchall()
    assert idx == [
        ("accounts_note", "CREATE INDEX accounts_note ON public.accounts USING btree (note)"
                          " WHERE (hits = 0)"),
        ("accounts_pkey", "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)"),
    ]


def test_dry_run_lists_every_step_with_its_lock_and_changes_nothing(db, online):
    create_accounts(db, 10)
    snap = schema_snapshot(db)
    r = online("change-type", "accounts", "id", "bigint", "--dry-run")
    assert r.code == 0, r.err
    for line in ("[expand] add-shadow-column", "[expand] install-sync-trigger",
                 "[backfill] backfill", "[backfill] validate-not-null-check",
                 "[backfill] build-index-1", "[contract] cutover", "[contract] drop-old-column",
                 "lock: SHARE ROW EXCLUSIVE", "lock: SHARE UPDATE EXCLUSIVE (blocks other DDL",
                 "CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_pgonline_new",
                 "PRIMARY KEY USING INDEX", "ALTER SEQUENCE \"public\".\"accounts_id_seq\" AS bigint"):
        assert line in r.out, line
    assert "outside a transaction" in r.out
    assert schema_snapshot(db) == snap
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)


def test_rollback_after_backfill_restores_the_original_schema(db, online):
    create_accounts(db, 3000)
    snap = schema_snapshot(db)
    assert online("change-type", "accounts", "id", "bigint", "--phase", "expand").code == 0
    assert online("resume", "1", "--phase", "backfill").code == 0
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == snap
    assert trigger_names(db, "accounts") == []
    assert db.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'zz_pgonline%'"
                      ).fetchone() == (0,)
    assert db.execute("INSERT INTO accounts DEFAULT VALUES RETURNING id").fetchone() == (3001,)


def test_rollback_after_the_cutover_refuses_instead_of_losing_writes(db, online):
    create_accounts(db, 100)
    assert online("change-type", "accounts", "hits", "bigint").code == 0
    r = online("rollback", "1", "--confirm")
    assert r.code != 0
    assert "cannot be rolled back" in r.err and "change-type" in r.err
    assert columns(db, "accounts")["hits"][0] == "bigint"


@pytest.mark.slow
def test_kill_9_mid_backfill_then_resume_finishes_the_change(db, dsn, online):
    create_accounts(db, 20_000)
    proc = spawn_online(["change-type", "accounts", "id", "bigint", *SLOW_BATCHES], dsn)
    wait_for_checkpoint(db, 1000)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # The trigger stays in place while nobody runs the job: writes stay synced.
    db.execute("INSERT INTO accounts (note) VALUES ('during the outage')")
    r = online("resume", "1")
    assert r.code == 0, r.err
    assert columns(db, "accounts")["id"][0] == "bigint"
    assert db.execute("SELECT count(*), max(id) FROM accounts").fetchone() == (20_001, 20_001)
    assert db.execute("SELECT id FROM accounts WHERE note = 'during the outage'").fetchone() == (
        20_001,)
    assert job_status(db) == "done"


def _refused(db: psycopg.Connection[Any], online: Any, *args: str) -> tuple[int, str]:
    snap = schema_snapshot(db)
    r = online("change-type", *args)
    assert r.code != 0
    assert r.err.startswith("error: "), r.err
    assert schema_snapshot(db) == snap
    return r.code, r.err


def test_bad_input_is_refused_with_a_clear_error_and_nothing_changes(db, online):
    create_accounts(db, 50)
    db.execute("CREATE TABLE orders (id int PRIMARY KEY, account int REFERENCES accounts (id))")
    db.execute("CREATE VIEW account_notes AS SELECT id, note FROM accounts")
    db.execute("CREATE TABLE tokens (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, t text)")
    cases = [
        (("accounts", "nope", "bigint"), 3, "does not exist"),
        (("missing", "id", "bigint"), 3, "does not exist"),
        (("accounts", "note", "no_such_type"), 2, "bad type"),
        (("accounts", "note", "int); drop table accounts; --"), 2, "type"),
        (("accounts", "hits", "uuid"), 2, "cannot convert integer to uuid"),
        (("accounts", "hits", "int", "--using", "nope + 1"), 2, "bad USING expression"),
        (("accounts", "hits", "bigint", "--using", "(select 1)"), 2, "subquery"),
        (("accounts", "id", "bigint"), 3,
         'referenced by 1 foreign key: "public"."orders"."account" ("orders_account_fkey")'),
        (("accounts", "note", "varchar(10)"), 3, "view account_notes"),
        (("accounts", "hits", "integer"), 3, "already of type integer"),
        (("accounts", "hits", "boolean", "--using", "hits > 0"), 3,
         'default of column "hits" (0) cannot be used'),
        (("tokens", "id", "bigint"), 3, "identity column"),
    ]
    for args, code, text in cases:
        got, err = _refused(db, online, *args)
        assert (got, text in err) == (code, True), (args, err)
    # Refused while planning: not even a journal was created.
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)


def test_narrowing_refuses_values_that_do_not_fit_instead_of_truncating_them(db, online):
    db.execute("CREATE TABLE codes (id int PRIMARY KEY, code varchar(10))")
    db.execute("INSERT INTO codes SELECT g, 'c' || g FROM generate_series(1, 500) g")
    db.execute("INSERT INTO codes VALUES (1000, 'much-long')")
    snap = schema_snapshot(db)
    r = online("change-type", "codes", "code", "varchar(5)")
    assert r.code == 10, r.err
    assert "value too long for type character varying(5)" in r.err
    status, hint = db.execute("SELECT status, hint FROM pgonline.jobs").fetchone()
    assert status == "failed" and "online rollback 1" in hint
    assert online("rollback", "1").code == 0
    assert schema_snapshot(db) == snap
    assert db.execute("SELECT code FROM codes WHERE id = 1000").fetchone() == ("much-long",)
    # Without a cast usable for assignment PostgreSQL would ask for USING; so do we.
    r = online("change-type", "codes", "code", "integer")
    assert r.code == 2 and "--using" in r.err


def test_using_that_yields_null_on_a_not_null_column_stops_before_any_constraint(db, online):
    """A USING conversion that is NULL for some rows must not leave a NOT VALID check on
    the shadow column: it would reject the application's writes of such values at once."""
    db.execute("CREATE TABLE refs (id bigint PRIMARY KEY, ref text NOT NULL)")
    db.execute("INSERT INTO refs SELECT g, CASE WHEN g % 10 = 0 THEN '' ELSE g::text END"
               " FROM generate_series(1, 200) g")
    snap = schema_snapshot(db)
    r = online("change-type", "refs", "ref", "integer", "--using", "nullif(ref, '')::integer")
    assert r.code == 10, (r.out, r.err)
    assert "20 rows" in r.err and "nothing is constrained yet" in r.err
    # The application still writes values the conversion turns into NULL.
    db.execute("INSERT INTO refs VALUES (1000, '')")
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'refs'::regclass"
                      " AND contype = 'c'").fetchone() == (0,)
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == snap


def _change_type(ctx, *values, **options):
    """``online change-type VALUES...`` in-process."""
    return run_command(ctx, "change-type", *values, **options)
