"""Names pgonline derives for its helper objects: unique per (table, column), ≤ 63 bytes.

Planner tests with hand-built facts, then real-server runs: two jobs whose
tables and columns join to the same text (``a_b.c`` and ``a.b_c``) at the
same time, and very long multi-byte names through every phase.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from pgonline.strategies._ddl import not_null_check_name
from pgonline.strategies.change_type import ChangeTypeArgs, ChangeTypeFacts, plan_change_type
from pgonline.strategies.rename_column import (
    RenameColumnArgs,
    RenameColumnFacts,
    plan_rename_column,
)
from psycopg import sql

from pgonline.catalog.column_details import ColumnDetails, ColumnIndex, NewTypeFacts
from pgonline.catalog.facts import ColumnFacts, IndexFacts, ServerFacts, TableFacts
from pgonline.engine.plan import Plan
from pgonline.sql.identifiers import MAX_IDENTIFIER_BYTES
from pgonline.sql.names import helper_column_name, helper_index_name, helper_name
from tests.support.column_changes import trigger_names
from tests.support.tables import columns

BIGINT = NewTypeFacts(display="bigint", oid=20, typmod=-1, collatable=False,
                      binary_coercible=False)
PG18 = ServerFacts(version_num=180000)


def _table(table: str, column: str, index: str) -> tuple[TableFacts, ColumnDetails]:
    """``table (id int PRIMARY KEY, column int NOT NULL)`` with an index on ``column``."""
    q = sql.Identifier
    definition = sql.SQL("CREATE INDEX {} ON {} USING btree ({})").format(
        q(index), q("public", table), q(column)).as_string(None)
    col = ColumnFacts(column, "integer", not_null=True)
    facts = TableFacts(
        schema="public", name=table, oid=1, columns=(ColumnFacts("id", "integer", True), col),
        primary_key=("id",), estimated_rows=0, size_bytes=0,
        indexes=(IndexFacts("public", index, (column,), unique=False, primary=False, valid=True,
                            has_expressions=False, predicate=None, definition=definition),),
    )
    details = ColumnDetails(column=col, attnum=2, type_oid=23, typmod=-1, indexes=(
        ColumnIndex(schema="public", name=index, definition=definition, valid=True),))
    return facts, details


def _change_type(table: str, column: str, index: str) -> Plan:
    t, c = _table(table, column, index)
    return plan_change_type(ChangeTypeFacts(PG18, t, c, BIGINT), ChangeTypeArgs(column, "bigint"))


def _rename(table: str, column: str, index: str, new: str) -> Plan:
    t, c = _table(table, column, index)
    return plan_rename_column(RenameColumnFacts(PG18, t, c), RenameColumnArgs(column, new))


_QUOTED = re.compile(r'"((?:[^"]|"")*)"')


def _identifiers(plan: Plan) -> set[str]:
    """Every double-quoted identifier in the plan's SQL (what the server would create)."""
    found: set[str] = set()
    for step in plan.steps:
        texts = [step.sql, step.undo_sql, step.done_if, step.cleanup_if, step.cleanup_sql]
        if step.backfill is not None:
            texts += [step.backfill.set_sql, step.backfill.where_sql]
        for text in texts:
            found.update(m.replace('""', '"') for m in _QUOTED.findall(text or ""))
    return found


def _helpers(plan: Plan) -> set[str]:
    return {n for n in _identifiers(plan) if "pgonline" in n}


def test_helper_names_differ_for_tables_and_columns_that_join_to_the_same_text():
    assert helper_name("zz_pgonline_sync", "public", "a_b", "c") != helper_name(
        "zz_pgonline_sync", "public", "a", "b_c")
    assert helper_name("zz", "s_t", "u", "c") != helper_name("zz", "s", "t_u", "c")
    assert helper_column_name("new", "public", "a_b", "c") != helper_column_name(
        "new", "public", "a", "c")
    assert helper_index_name("new", "public", "i", "c_new") != helper_index_name(
        "new", "public", "i", "d_new")
    assert helper_name("p", "s", "t", "c") == helper_name("p", "s", "t", "c")  # stable for resume


@pytest.mark.parametrize("plan", [
    lambda: (_change_type("a_b", "c", "ix1"), _change_type("a", "b_c", "ix2")),
    lambda: (_rename("a_b", "c", "ix1", "d"), _rename("a", "b_c", "ix2", "d")),
], ids=["change-type", "rename-column"])
def test_two_plans_on_a_b_c_and_a_b_c_share_no_helper_object(plan):
    first, second = plan()
    assert _helpers(first) and _helpers(second)
    assert _helpers(first).isdisjoint(_helpers(second))


def test_shadow_and_parked_columns_start_with_the_column_and_are_per_table():
    plan = _change_type("users", "email", "users_email_idx")
    names = _helpers(plan)
    shadow = helper_column_name("new", "public", "users", "email")
    assert shadow.startswith("email_pgonline_new_")
    assert {shadow, helper_column_name("old", "public", "users", "email"),
            helper_name("zz_pgonline_sync", "public", "users", "email"),
            helper_name("zz_pgonline_sync_update", "public", "users", "email"),
            helper_index_name("new", "public", "users_email_idx", shadow),
            not_null_check_name(_table("users", "email", "i")[0], shadow)} <= names


LONG_TABLE = "表" * 21  # 63 bytes
LONG_COLUMN = "é" * 31 + "x"  # 63 bytes
LONG_INDEX = "ü" * 31 + "i"  # 63 bytes
LONG_NEW = "ö" * 31 + "n"  # 63 bytes


def test_every_name_in_a_plan_fits_63_bytes_for_63_byte_multibyte_names():
    for plan in (_change_type(LONG_TABLE, LONG_COLUMN, LONG_INDEX),
                 _rename(LONG_TABLE, LONG_COLUMN, LONG_INDEX, LONG_NEW)):
        names = _identifiers(plan)
        assert len(_helpers(plan)) >= 3  # trigger, NOT NULL check, index twin (+ columns)
        too_long = [n for n in names if len(n.encode()) > MAX_IDENTIFIER_BYTES]
        assert too_long == []
        for n in names:  # cut on a character boundary, never inside one
            n.encode().decode()


# --- on the real server ----------------------------------------------------


def _two_tables(db: psycopg.Connection[Any]) -> None:
    db.execute("CREATE TABLE a_b (id int PRIMARY KEY, c int NOT NULL)")
    db.execute("CREATE TABLE a (id int PRIMARY KEY, b_c int NOT NULL)")
    db.execute("INSERT INTO a_b SELECT g, g FROM generate_series(1, 100) g")
    db.execute("INSERT INTO a SELECT g, g * 10 FROM generate_series(1, 100) g")


def _value(db: psycopg.Connection[Any], table: str, column: str, id_: int) -> Any:
    row = db.execute(sql.SQL("SELECT {} FROM {} WHERE id = %s").format(
        sql.Identifier(column), sql.Identifier(table)), [id_]).fetchone()
    assert row is not None
    return row[0]


def test_change_type_on_a_b_c_and_a_b_c_at_once_keeps_writes_to_both_tables_working(db, online):
    _two_tables(db)
    assert online("change-type", "a_b", "c", "bigint", "--phase", "expand").code == 0
    assert online("change-type", "a", "b_c", "bigint", "--phase", "expand").code == 0
    # Both expands done: each table has its own trigger writing its own shadow column.
    db.execute("INSERT INTO a_b VALUES (101, 7)")
    db.execute("UPDATE a_b SET c = 8 WHERE id = 1")
    db.execute("INSERT INTO a VALUES (101, 70)")
    db.execute("UPDATE a SET b_c = 80 WHERE id = 1")
    assert _value(db, "a_b", helper_column_name("new", "public", "a_b", "c"), 101) == 7
    assert _value(db, "a_b", helper_column_name("new", "public", "a_b", "c"), 1) == 8
    assert _value(db, "a", helper_column_name("new", "public", "a", "b_c"), 101) == 70
    assert _value(db, "a", helper_column_name("new", "public", "a", "b_c"), 1) == 80
    assert trigger_names(db, "a_b") != trigger_names(db, "a")
    assert online("resume", "1").code == 0
    assert online("resume", "2").code == 0
    assert columns(db, "a_b")["c"][0] == columns(db, "a")["b_c"][0] == "bigint"
    assert db.execute("SELECT sum(c) FROM a_b").fetchone() == (5050 - 1 + 8 + 7,)
    assert db.execute("SELECT sum(b_c) FROM a").fetchone() == (50500 - 10 + 80 + 70,)


def test_rename_column_on_a_b_c_and_a_b_c_at_once_keeps_writes_to_both_tables_working(db, online):
    _two_tables(db)
    assert online("rename-column", "a_b", "c", "c2", "--phase", "expand").code == 0
    assert online("rename-column", "a", "b_c", "b_c2", "--phase", "expand").code == 0
    # Old application code writes the old names, new code the new ones.
    db.execute("INSERT INTO a_b (id, c) VALUES (101, 7)")
    db.execute("INSERT INTO a (id, b_c) VALUES (101, 70)")
    db.execute("UPDATE a SET b_c2 = 80 WHERE id = 1")
    assert _value(db, "a_b", "c2", 101) == 7
    assert _value(db, "a", "b_c2", 101) == 70
    assert _value(db, "a", "b_c", 1) == 80
    assert online("resume", "1").code == 0
    assert online("resume", "2").code == 0
    assert "c2" in columns(db, "a_b") and "b_c2" in columns(db, "a")
    assert _value(db, "a_b", "c2", 101) == 7 and _value(db, "a", "b_c2", 1) == 80


def test_change_type_and_rename_column_with_63_byte_multibyte_names_run_through(db, online):
    t, c, i = (sql.Identifier(n) for n in (LONG_TABLE, LONG_COLUMN, LONG_INDEX))
    db.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, {} int NOT NULL)").format(t, c))
    db.execute(sql.SQL("CREATE INDEX {} ON {} ({})").format(i, t, c))
    db.execute(sql.SQL("INSERT INTO {} SELECT g, g FROM generate_series(1, 50) g").format(t))
    table, column = f'"{LONG_TABLE}"', f'"{LONG_COLUMN}"'
    r = online("change-type", table, column, "bigint", "--phase", "expand")
    assert r.code == 0, r.err
    # Created under the planned names (PostgreSQL would silently cut longer ones).
    assert trigger_names(db, LONG_TABLE) == sorted(
        helper_name(prefix, "public", LONG_TABLE, LONG_COLUMN)
        for prefix in ("zz_pgonline_sync", "zz_pgonline_sync_update"))
    assert helper_column_name("new", "public", LONG_TABLE, LONG_COLUMN) in columns(db, LONG_TABLE)
    r = online("change-type", table, column, "bigint")
    assert r.code == 0, r.err
    r = online("rename-column", table, column, f'"{LONG_NEW}"')
    assert r.code == 0, r.err
    r = online("resume", "2", "--phase", "contract")  # the cut-over waits for the operator
    assert r.code == 0, r.err
    cols = columns(db, LONG_TABLE)
    assert list(cols) == ["id", LONG_NEW] and cols[LONG_NEW] == ("bigint", True, None)
    assert db.execute("SELECT count(*) FROM pg_indexes WHERE tablename = %s AND indexname = %s",
                      [LONG_TABLE, LONG_INDEX]).fetchone() == (1,)


def test_postgresql_style_default_names_already_taken_are_refused_at_planning(db, online):
    db.execute("CREATE TABLE a_b (id int NOT NULL, c int)")
    db.execute("CREATE TABLE a (id int NOT NULL, b_c int)")
    db.execute("CREATE TABLE p (id int PRIMARY KEY)")
    db.execute("CREATE TABLE a_pkey (x int)")  # a table named like a's primary key
    db.execute("ALTER TABLE a ADD CONSTRAINT a_b_c_key CHECK (b_c > 0)")
    db.execute("ALTER TABLE a ADD CONSTRAINT a_b_c_fkey CHECK (b_c > 0)")
    assert online("add-index", "a_b", "c").code == 0  # a_b_c_idx, on a_b
    cases = [
        (("add-index", "a", "b_c"), 'relation "public"."a_b_c_idx" already exists'),
        (("add-unique", "a", "b_c"), 'constraint "a_b_c_key" already exists'),
        (("add-foreign-key", "a", "b_c", "--references", "p"), 'constraint "a_b_c_fkey" already'),
        (("add-primary-key", "a", "id"), 'relation "public"."a_pkey" already exists'),
    ]
    for args, message in cases:
        r = online(*args)
        assert (r.code, message in r.err, "Traceback" in r.err) == (3, True, False), (args, r.err)
    assert db.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'a'").fetchone() == (0,)


def test_partition_index_pieces_are_distinct_short_and_stable():
    from pgonline.sql.names import partition_index_name

    long_part = "é" * 40  # 80 bytes
    names = {partition_index_name("idx", "s", long_part), partition_index_name("idx", "t", long_part),
             partition_index_name("a_b", "s", "c"), partition_index_name("a", "s", "b_c")}
    assert len(names) == 4
    assert all(len(n.encode()) <= 63 for n in names)
    assert partition_index_name("i", "s", "p") == partition_index_name("i", "s", "p")
    assert partition_index_name("i", "s", "p").startswith("p_i_")
