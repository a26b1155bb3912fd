""""Did you mean ...?" for a mistyped table, column or index."""

from __future__ import annotations

from pgonline.catalog.suggestions import did_you_mean
from tests.support.tables import create_users


def test_a_mistyped_table_gets_the_closest_tables(db, online):
    create_users(db, 10)
    r = online("add-column", "usres", "x", "int")
    assert r.code == 3
    assert 'table "usres" does not exist' in r.err and 'did you mean "users"?' in r.err


def test_a_table_in_another_schema_is_suggested_with_its_schema(db, online):
    db.execute("CREATE SCHEMA app; CREATE TABLE app.accounts (id int PRIMARY KEY)")
    r = online("add-column", "acounts", "x", "int")
    assert r.code == 3 and 'did you mean "app"."accounts"?' in r.err, r.err


def test_a_mistyped_column_gets_the_closest_columns(db, online):
    create_users(db, 10)
    for args in (["set-not-null", "users", "emial"], ["change-type", "users", "emial", "text"],
                 ["add-index", "users", "emial"]):
        r = online(*args)
        assert r.code == 3, (args, r.err)
        assert 'did you mean "email"?' in r.err, (args, r.err)


def test_a_mistyped_index_gets_the_closest_indexes(db, online):
    create_users(db, 10)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    r = online("drop-index", "users_emial_idx")
    assert r.code == 3 and 'did you mean "users_email_idx"?' in r.err, r.err


def test_nothing_close_gives_no_suggestion():
    assert did_you_mean("orders", ["users", "accounts"]) is None
    assert did_you_mean("Users", ["users"]) == "did you mean users?"
