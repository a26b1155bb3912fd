"""change-type --with-references on a real server: a primary key that foreign keys reference
is widened together with every referencing column (issue #13, item 2).

The kill -9/resume loop under writes on both tables is in tests/test_chaos.py.
"""

from __future__ import annotations

from typing import Any

import psycopg

from tests.support.tables import columns, schema_snapshot

EXIT_USAGE, EXIT_CATALOG = 2, 3


def create_accounts_with_references(db: psycopg.Connection[Any]) -> None:
    """accounts.id (int4 serial) referenced from another schema, from itself, by a
    NOT VALID key, and by a column that is already bigint."""
    db.execute("""
        CREATE SCHEMA billing;
        CREATE TABLE accounts (id serial PRIMARY KEY, parent_id integer REFERENCES accounts,
                               name text NOT NULL);
        CREATE TABLE billing.invoices (
            id bigserial PRIMARY KEY,
            account_id integer NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
            amount integer NOT NULL);
        CREATE INDEX invoices_account_idx ON billing.invoices (account_id);
        CREATE TABLE legacy (id bigserial PRIMARY KEY, account_id integer);
        CREATE TABLE wide (id bigserial PRIMARY KEY, account_id bigint REFERENCES accounts);
        INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 3000) g;
        UPDATE accounts SET parent_id = id - 1 WHERE id > 1;
        INSERT INTO billing.invoices (account_id, amount)
             SELECT 1 + g % 3000, g FROM generate_series(1, 9000) g;
        INSERT INTO legacy (account_id) VALUES (1), (2);
        ALTER TABLE legacy ADD CONSTRAINT legacy_account_fkey FOREIGN KEY (account_id)
            REFERENCES accounts NOT VALID;
        INSERT INTO wide (account_id) SELECT g FROM generate_series(1, 100) g;
    """)


def foreign_keys(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return db.execute(
        """SELECT conrelid::regclass::text, conname, convalidated, pg_get_constraintdef(oid)
             FROM pg_constraint WHERE contype = 'f' AND connamespace::regnamespace::text <> 'pgonline'
            ORDER BY 1, 2""").fetchall()


def test_without_the_flag_the_refusal_lists_every_referencing_column_and_changes_nothing(
        db, online):
    create_accounts_with_references(db)
    snap = schema_snapshot(db)
    r = online("change-type", "accounts", "id", "bigint")
    assert r.code == EXIT_CATALOG, r.err
    assert "referenced by 4 foreign keys" in r.err
    for column in ('"public"."accounts"."parent_id" ("accounts_parent_id_fkey")',
                   '"billing"."invoices"."account_id" ("invoices_account_id_fkey")',
                   '"public"."legacy"."account_id" ("legacy_account_fkey")',
                   '"public"."wide"."account_id" ("wide_account_id_fkey")'):
        assert column in r.err
    assert "--with-references" in r.err
    assert schema_snapshot(db) == snap


def test_using_cannot_be_combined_with_references(db, online):
    create_accounts_with_references(db)
    r = online("change-type", "accounts", "id", "bigint", "--using", "id * 10",
               "--with-references")
    assert r.code == EXIT_USAGE, r.err
    assert "--with-references" in r.err


def test_with_references_widens_key_and_every_referencing_column_and_keeps_the_keys(db, online):
    create_accounts_with_references(db)
    before = {(t, n): d for t, n, _, d in foreign_keys(db)}
    r = online("change-type", "accounts", "id", "bigint", "--with-references")
    assert r.code == 0, r.err
    for table, column in (("accounts", "id"), ("accounts", "parent_id"),
                          ("billing.invoices", "account_id"), ("legacy", "account_id"),
                          ("wide", "account_id")):
        assert columns(db, table)[column][0] == "bigint", (table, column)
    after = foreign_keys(db)
    # Every key is back with its definition (actions included); the one the user left
    # NOT VALID stays NOT VALID, the others are validated.
    assert {(t, n): d for t, n, _, d in after} == before
    assert {n: v for _, n, v, _ in after} == {
        "accounts_parent_id_fkey": True, "invoices_account_id_fkey": True,
        "legacy_account_fkey": False, "wide_account_id_fkey": True}
    seq = db.execute("SELECT format_type(seqtypid, NULL) FROM pg_sequence"
                     " WHERE seqrelid = 'accounts_id_seq'::regclass").fetchone()
    assert seq == ("bigint",)
    assert db.execute("SELECT count(*) FROM billing.invoices i JOIN accounts a"
                      " ON a.id = i.account_id").fetchone() == (9000,)
    indexes = {r[0] for r in db.execute(
        "SELECT indexrelid::regclass::text FROM pg_index"
        " WHERE indrelid = 'billing.invoices'::regclass").fetchall()}
    assert indexes == {"billing.invoices_pkey", "billing.invoices_account_idx"}
    leftovers = db.execute("SELECT attrelid::regclass::text, attname FROM pg_attribute a"
                           " JOIN pg_class c ON c.oid = a.attrelid AND c.relkind = 'r'"
                           " WHERE attname LIKE '%%pgonline%%' AND NOT attisdropped").fetchall()
    assert leftovers == []
    # The key works as before: a delete cascades, a dangling reference is refused.
    db.execute("DELETE FROM accounts WHERE id = 3000")
    assert db.execute("SELECT count(*) FROM billing.invoices WHERE account_id = 3000"
                      ).fetchone() == (0,)
    try:
        db.execute("INSERT INTO billing.invoices (account_id, amount) VALUES (99999, 1)")
        raise AssertionError("a dangling reference was accepted")
    except psycopg.errors.ForeignKeyViolation:
        pass


def test_rollback_before_the_cutover_restores_every_table(db, online):
    create_accounts_with_references(db)
    snap = schema_snapshot(db)
    fks = foreign_keys(db)
    for phase in ("expand", "backfill"):
        r = online("change-type", "accounts", "id", "bigint", "--with-references",
                   "--phase", phase)
        assert r.code == 0, r.err
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == snap
    assert foreign_keys(db) == fks
    triggers = db.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal").fetchall()
    assert triggers == []


def test_a_referencing_column_something_else_depends_on_is_refused_before_anything_changes(
        db, online):
    create_accounts_with_references(db)
    db.execute("CREATE VIEW invoice_accounts AS SELECT account_id FROM billing.invoices")
    snap = schema_snapshot(db)
    r = online("change-type", "accounts", "id", "bigint", "--with-references")
    assert r.code == EXIT_CATALOG, r.err
    assert '"account_id" of "billing"."invoices"' in r.err and "invoice_accounts" in r.err
    assert schema_snapshot(db) == snap


def test_a_job_on_a_referencing_table_waits_for_the_job_converting_it(db, online):
    """One unfinished job per table holds for the tables a plan converts besides its target."""
    create_accounts_with_references(db)
    r = online("change-type", "accounts", "id", "bigint", "--with-references", "--phase", "expand")
    assert r.code == 0, r.err
    r = online("add-column", "billing.invoices", "note", "text")
    assert r.code == 6, r.err
    assert "job 1" in r.err and "online resume 1" in r.err
    # And the other way round: a referencing table's unfinished job stops the conversion.
    r = online("rollback", "1")
    assert r.code == 0, r.err
    r = online("change-type", "billing.invoices", "amount", "bigint", "--phase", "expand")
    assert r.code == 0, r.err
    r = online("change-type", "accounts", "id", "bigint", "--with-references")
    assert r.code == 6, r.err
    assert "job 2" in r.err
    assert columns(db, "accounts")["id"][0] == "integer"


def test_the_cutover_lock_of_several_tables_waits_at_most_one_lock_timeout_in_all(db, dsn):
    """lock_timeout bounds each table's wait on its own; the cut-over's LOCK TABLE of every
    table is bounded as a whole, so the application, queued behind the tables we already
    hold, never waits longer than one lock_timeout."""
    import threading
    import time

    from pgonline.strategies._references import _bounded_lock
    from psycopg import sql

    from pgonline.sql.render import render

    db.execute("CREATE TABLE t1 (id int); CREATE TABLE t2 (id int); CREATE TABLE t3 (id int)")
    holders = [psycopg.connect(dsn) for _ in range(2)]
    for h, t in zip(holders, ("t2", "t3"), strict=True):
        h.execute(f"SELECT * FROM {t}")  # noqa: S608 - an application transaction holds it
    # t2 is released after 200 ms (within lock_timeout), t3 never: per table, the lock of
    # t3 would then wait a full lock_timeout more (55P03 at ~500 ms).
    threading.Timer(0.2, holders[0].rollback).start()
    stmts = _bounded_lock([sql.Identifier(t) for t in ("t1", "t2", "t3")])
    with psycopg.connect(dsn, autocommit=True) as ours:
        ours.execute("SET lock_timeout = '300ms'")
        ours.execute("SET statement_timeout = '10s'")
        t0 = time.monotonic()
        try:
            with ours.transaction():
                ours.execute(render(sql.SQL(";\n").join(stmts)))
            raise AssertionError("the lock was taken while t3 was held")
        except psycopg.errors.QueryCanceled:
            waited = time.monotonic() - t0
        # After the LOCK statement, the step's own statement_timeout is back.
        with ours.transaction():
            ours.execute(render(sql.SQL(";\n").join(stmts[:2] + stmts[3:])))
            assert ours.execute("SHOW statement_timeout").fetchone() == ("10s",)
    holders[1].close()
    holders[0].close()
    assert waited < 0.45, waited
