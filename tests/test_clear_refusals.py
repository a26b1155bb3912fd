"""Clear refusals at planning (exit 3, no job, nothing changed) instead of tracebacks or
late failures; unquoted names fold exactly as the server folds them."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pgonline.strategies.change_type import ChangeTypeArgs, ChangeTypeFacts, plan_change_type

from pgonline.catalog.column_details import ColumnDetails, Dependent, NewTypeFacts
from pgonline.catalog.facts import ColumnFacts, ServerFacts, TableFacts
from pgonline.errors import CatalogError
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from tests.support.tables import columns, schema_snapshot


def _no_job(db: psycopg.Connection[Any]) -> bool:
    row = db.execute("SELECT to_regclass('pgonline.jobs')").fetchone()
    if row == (None,):
        return True
    return db.execute("SELECT count(*) FROM pgonline.jobs").fetchone() == (0,)


@pytest.fixture
def generated(db):
    db.execute("""
        CREATE TABLE g (
            id int PRIMARY KEY,
            a int,
            v varchar(5),
            twice int GENERATED ALWAYS AS (a * 2) STORED,
            tagged varchar(10) GENERATED ALWAYS AS (v || '!') STORED
        )""")
    db.execute("INSERT INTO g (id, a, v) SELECT i, i, 'v' || i FROM generate_series(1, 20) i")
    return db


@pytest.mark.parametrize(("column", "type_", "message"), [
    ("twice", "bigint", '"twice" of "public"."g": it is a generated column'),
    ("tagged", "varchar(20)", '"tagged" of "public"."g": it is a generated column'),
    ("a", "bigint", '"a" of "public"."g": used by generated column "twice"'),
    # In place (varchar widening) as well: PostgreSQL would refuse it at execution.
    ("v", "varchar(20)", '"v" of "public"."g": used by generated column "tagged"'),
], ids=["generated-rewrite", "generated-in-place", "used-rewrite", "used-in-place"])
def test_change_type_of_a_generated_column_or_one_it_uses_is_refused_at_planning(
        generated, online, column, type_, message):
    before = schema_snapshot(generated)
    r = online("change-type", "g", column, type_)
    assert (r.code, "Traceback" in r.err) == (3, False), r.err
    assert message in r.err
    assert _no_job(generated)
    assert schema_snapshot(generated) == before


def test_backfill_set_of_a_generated_column_is_refused_before_a_job_is_created(generated, online):
    before = generated.execute("SELECT md5(string_agg(g::text, ',' ORDER BY id)) FROM g").fetchone()
    r = online("backfill", "g", "--set", "a = 1, twice = 5")
    assert r.code == 3, r.err
    assert 'cannot backfill "twice" of "public"."g": generated column' in r.err
    assert _no_job(generated)
    assert generated.execute("SELECT md5(string_agg(g::text, ',' ORDER BY id)) FROM g"
                             ).fetchone() == before


def test_unquoted_names_fold_only_ascii_letters_like_the_server():
    assert parse_identifier("ÄBC") == "Äbc"
    assert parse_identifier("ÉtÉ_X") == "ÉtÉ_x"
    assert parse_identifier('"ÄBC"') == "ÄBC"
    assert QualifiedName.parse("MySchema.ÜSERS") == QualifiedName("myschema", "Üsers")


def test_set_not_null_finds_a_column_added_unquoted_with_a_non_ascii_name(db, online):
    db.execute("CREATE TABLE users (id int PRIMARY KEY)")
    db.execute("INSERT INTO users SELECT generate_series(1, 10)")
    db.execute("ALTER TABLE users ADD COLUMN ÄBC int DEFAULT 1")
    assert "Äbc" in columns(db, "users")  # what the server made of it
    r = online("set-not-null", "users", "ÄBC")
    assert r.code == 0, r.err
    assert columns(db, "users")["Äbc"][1] is True


def test_a_foreign_constraint_named_like_the_not_null_constraint_is_refused_not_reused(db, online):
    db.execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
    db.execute("INSERT INTO users VALUES (1, 'a@b'), (2, 'c@d')")
    # Someone else's constraint carries the name PostgreSQL gives email's NOT NULL.
    db.execute("ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email <> '')")
    before = schema_snapshot(db)
    r = online("set-not-null", "users", "email")
    if db.info.server_version >= 180000:
        assert r.code == 3, r.err
        assert 'constraint "users_email_not_null" already exists' in r.err
        assert schema_snapshot(db) == before
    else:  # the helper CHECK path has a name of its own
        assert r.code == 0, r.err
    assert columns(db, "users")["email"][1] is (r.code == 0)


def test_planner_refuses_generated_columns_from_hand_built_facts():
    col = ColumnFacts("a", "integer", not_null=False)
    table = TableFacts("public", "g", 1, (ColumnFacts("id", "integer", True), col), ("id",), 0, 0)
    bigint = NewTypeFacts("bigint", 20, -1, collatable=False, binary_coercible=False)
    used = ColumnDetails(col, 2, 23, -1, dependents=(
        Dependent("generated column", 'generated column "twice"', "a"),))
    itself = ColumnDetails(col, 2, 23, -1, generated="s")
    for details, text in ((used, 'used by generated column "twice"'),
                          (itself, "it is a generated column")):
        with pytest.raises(CatalogError, match=text):
            plan_change_type(ChangeTypeFacts(ServerFacts(180000), table, details, bigint),
                             ChangeTypeArgs("a", "bigint"))


def test_the_columns_own_unvalidated_not_null_constraint_under_another_name_is_validated(
        db, online):
    if db.info.server_version < 180000:
        pytest.skip("NOT NULL ... NOT VALID needs PostgreSQL 18")
    db.execute("CREATE TABLE users (id int PRIMARY KEY, email text)")
    db.execute("INSERT INTO users VALUES (1, 'a@b'), (2, 'c@d')")
    db.execute("ALTER TABLE users ADD CONSTRAINT email_required NOT NULL email NOT VALID")
    r = online("set-not-null", "users", "email")
    assert r.code == 0, r.err  # was: exit 10, "a not-null constraint named ... already exists"
    assert db.execute("SELECT conname, convalidated FROM pg_constraint WHERE conrelid = "
                      "'users'::regclass AND contype = 'n' AND conname <> 'users_id_not_null'"
                      ).fetchall() == [("email_required", True)]
