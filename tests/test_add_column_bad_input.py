"""Bad input: a clear one-line error, a documented exit code, the database unchanged."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.support.tables import columns, create_users, schema_snapshot


@pytest.fixture
def users(db):
    create_users(db, 50)
    return schema_snapshot(db)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["missing_table", "c", "int"], 3, 'table "missing_table" does not exist'),
        (['"x; drop table users"', "c", "int"], 3, 'table "x; drop table users" does not exist'),
        (["x; drop table users", "c", "int"], 2, "not a valid unquoted identifier"),
        (["users", "c; drop table users", "int"], 2, "not a valid unquoted identifier"),
        (["users", "email", "text"], 3, 'column "email" already exists'),
        (["users", "c", "no_such_type"], 2, "bad type"),
        (["users", "c", "int; drop table users"], 2, "must be a single SQL expression"),
        (["users", "c", "int", "--default", "1); drop table users; --"], 2, "default"),
        (["users", "c", "int", "--default", "'abc'"], 2, "invalid input syntax"),
        (["users", "c", "int", "--not-null"], 2, "needs --default or --backfill"),
        (["users", "c", "int", "--backfill", "no_such_column + 1"], 2, "bad backfill expression"),
        (["users", "c", "int", "--backfill", "(select 1)"], 2, "must not contain a subquery"),
        (["a.b.c", "c", "int"], 2, "too many dotted parts"),
        (["users", "x" * 64, "int"], 2, "longer than 63 bytes"),
    ],
)
def test_bad_input_exits_with_clear_error_and_changes_nothing(db, online, users, args, code,
                                                              message):
    r = online("add-column", *args)
    assert r.code == code, r.err
    assert message in r.err
    assert "Traceback" not in r.err
    assert r.err.startswith("error: ") or "\nerror: " in r.err
    assert schema_snapshot(db) == users


def test_hostile_column_name_is_just_a_name(db, online, users):
    r = online("add-column", "users", '"x; drop table users"', "int")
    assert r.code == 0, r.err
    assert "x; drop table users" in columns(db, "users")
    assert db.execute("SELECT count(*) FROM users").fetchone() == (50,)


def test_staged_change_on_a_table_without_key_walks_pages_and_backfill_set_is_refused(db, online):
    """PostgreSQL >= 14 (both tested majors): the fill walks ranges of pages; an arbitrary
    `online backfill --set` is refused there (tests/test_tid_ranges.py has the details)."""
    db.execute("CREATE TABLE nokey (a int)")
    db.execute("INSERT INTO nokey SELECT generate_series(1, 10)")
    r = online("add-column", "nokey", "t", "uuid", "--default", "gen_random_uuid()")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(DISTINCT t) FROM nokey").fetchone() == (10,)
    before = schema_snapshot(db)
    r = online("backfill", "nokey", "--set", "a = a + 1")
    assert r.code == 3
    assert "no primary key or NOT NULL unique index" in r.err and "hint:" in r.err
    assert schema_snapshot(db) == before
    assert db.execute("SELECT sum(a) FROM nokey").fetchone() == (55,)


def test_unique_not_null_index_serves_as_batch_key(db, online):
    db.execute("CREATE TABLE k (code text NOT NULL, v int)")
    db.execute("CREATE UNIQUE INDEX k_code ON k (code)")
    db.execute("INSERT INTO k SELECT 'c' || g, g FROM generate_series(1, 3000) g")
    r = online("add-column", "k", "t", "uuid", "--default", "gen_random_uuid()", "--not-null",
               "--batch-size", "100", "--max-batch-size", "100")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(DISTINCT t) FROM k").fetchone() == (3000,)


def test_without_dsn_or_database_url_it_connects_the_way_psql_does(db, dsn, online, monkeypatch):
    create_users(db, 10)
    params = conninfo_to_dict(dsn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
                     ("dbname", "PGDATABASE"), ("password", "PGPASSWORD")):
        if params.get(key):
            monkeypatch.setenv(var, str(params[key]))
    r = online("add-column", "users", "c", "int", with_dsn=False)
    assert r.code == 0, r.err
    assert "c" in columns(db, "users")


def test_without_any_connection_settings_the_error_says_which_defaults_were_tried(online,
                                                                                 monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")  # nothing listens there
    r = online("add-column", "users", "c", "int", with_dsn=False)
    assert r.code == 7 and "cannot connect" in r.err
    assert "no --dsn or DATABASE_URL: libpq's defaults were used" in r.err


def test_unreachable_server_exits_7_and_never_prints_the_password(online):
    r = online("add-column", "users", "c", "int", "--dsn",
               "postgresql://app:s3cret-pw@127.0.0.1:1/db?connect_timeout=2", with_dsn=False)
    assert r.code == 7
    assert "cannot connect" in r.err
    assert "s3cret-pw" not in r.err
