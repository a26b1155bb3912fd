"""``online migrate test``: each down is judged alone, on full definitions, and irreversible ups are named.

Every directory is written in the seed's layout (``NNN_name.sql`` +
``NNN_name_down.sql``) and run through the CLI against the session's real
server, so the messages asserted are the ones a user reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CliResult


def write_migrations(tmp: Path, *files: tuple[str, str, str]) -> Path:
    """``(stem, up, down)`` triples as ``stem.sql`` + ``stem_down.sql``."""
    d = tmp / "migrations"
    d.mkdir()
    for stem, up, down in files:
        (d / f"{stem}.sql").write_text(f"-- Migration: {stem}\n{up}\n")
        (d / f"{stem}_down.sql").write_text(f"-- Migration Rollback: {stem}\n{down}\n")
    return d


def migrate_test(online, pg_server, d: Path) -> CliResult:  # type: ignore[no-untyped-def]
    return online("migrate", "test", str(d), "--dsn", pg_server.dsn)


NOOP = "-- nothing to undo (deliberately wrong)"


# --- a later down's leftover is never carried into an earlier verdict ---------

def test_leftover_column_of_a_later_down_is_not_blamed_on_the_down_that_drops_its_table(
        tmp_path, online, pg_server):
    # The reproduction.
    d = write_migrations(tmp_path,
                         ("001_t", "CREATE TABLE t (a int);", "DROP TABLE t;"),
                         ("002_b", "ALTER TABLE t ADD COLUMN b int;", NOOP))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_b did not restore the schema:\n  left behind: column t.b\n" in r.err
    assert "down of 001_t" not in r.err
    assert "removed too much" not in r.err


def test_leftover_table_of_a_later_down_is_not_blamed_on_earlier_downs(tmp_path, online, pg_server):
    d = write_migrations(tmp_path,
                         ("001_t", "CREATE TABLE t (a int);", "DROP TABLE t;"),
                         ("002_u", "CREATE TABLE u (id int PRIMARY KEY);", NOOP),
                         ("003_i", "CREATE INDEX t_a_idx ON t (a);", "DROP INDEX t_a_idx;"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_u did not restore the schema:" in r.err
    assert "left behind: table u" in r.err and "left behind: index u_pkey" in r.err
    assert "down of 001_t" not in r.err and "down of 003_i" not in r.err


def test_an_earlier_down_is_still_blamed_for_its_own_leftover_but_not_for_a_later_one(
        tmp_path, online, pg_server):
    d = write_migrations(tmp_path,
                         ("001_ts", "CREATE TABLE t (a int);\nCREATE TABLE s (x int);",
                          "DROP TABLE t;"),  # forgets s
                         ("002_b", "ALTER TABLE t ADD COLUMN b int;", NOOP))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    err = r.err
    assert "down of 002_b did not restore the schema:\n  left behind: column t.b\n" in err
    own = err[err.index("down of 001_ts"):]
    assert "left behind: table s" in own and "left behind: column s.x" in own
    assert "t.b" not in own


def test_a_down_that_fails_after_a_later_down_removed_too_much_shows_both(tmp_path, online, pg_server):
    d = write_migrations(tmp_path,
                         ("001_t", "CREATE TABLE t (a int);", "DROP TABLE t;"),
                         ("002_b", "ALTER TABLE t ADD COLUMN b int;", "DROP TABLE t;"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 10  # the server refused 001's DROP TABLE
    assert 'down of 001_t failed: 001_t_down.sql:2:1: table "t" does not exist' in r.err
    # The cause is shown too: 002's down removed what 001 created.
    assert ("a likely cause, found earlier in the test:\ndown of 002_b did not restore the schema:\n"
            "  removed too much: column t.a\n  removed too much: table t\n") in r.err


# --- definitions are compared in full ------------------------------------------

def test_a_down_that_recreates_an_index_with_a_different_long_predicate_is_reported(
        tmp_path, online, pg_server):
    before = "CREATE INDEX t_positive_idx ON public.t USING btree (id) WHERE (id > 0)"
    assert len(before) > 63  # the difference lies past a `name`'s 63 bytes
    d = write_migrations(
        tmp_path,
        ("001_t", "CREATE TABLE t (id int);\nCREATE INDEX t_positive_idx ON t (id) WHERE id > 0;",
         "DROP TABLE t;"),
        ("002_narrow", "DROP INDEX t_positive_idx;\n"
                       "CREATE INDEX t_positive_idx ON t (id) WHERE id > 10;",
         "DROP INDEX t_positive_idx;\nCREATE INDEX t_positive_idx ON t (id) WHERE id > 5;"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_narrow did not restore the schema:" in r.err
    assert (f"changed: index t_positive_idx: {before!r} -> "
            f"{before.replace('id > 0', 'id > 5')!r}") in r.err
    assert "down of 001_t" not in r.err


def test_a_down_that_restores_a_function_with_another_volatility_is_reported(tmp_path, online, pg_server):
    body = "LANGUAGE sql AS $$ SELECT 1 $$"
    d = write_migrations(
        tmp_path,
        ("001_f", f"CREATE FUNCTION one() RETURNS int IMMUTABLE {body};", "DROP FUNCTION one();"),
        ("002_f", f"CREATE OR REPLACE FUNCTION one() RETURNS int VOLATILE {body};",
         f"CREATE OR REPLACE FUNCTION one() RETURNS int STABLE {body};"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    # Same body, so a checksum of the body alone would not see it.
    assert "down of 002_f did not restore the schema:" in r.err
    assert "changed: function one(): line 4: ' IMMUTABLE' -> ' STABLE'" in r.err

EVERY_KIND_UP = """
CREATE SCHEMA app;
CREATE DOMAIN app.short_text AS varchar(20) DEFAULT 'x' CHECK (VALUE <> '');
CREATE TYPE app.span AS RANGE (subtype = int4);
CREATE TYPE app.colour AS ENUM ('red', 'gr,een');
CREATE SEQUENCE app.counter START 10 INCREMENT 5 CACHE 2 CYCLE;
CREATE TABLE app.t (id int PRIMARY KEY, label app.short_text, c app.colour, owner text);
CREATE INDEX t_label_idx ON app.t (label) WHERE label IS NOT NULL AND id > 100;
CREATE VIEW app.v AS SELECT id, label FROM app.t WHERE id > 0;
CREATE MATERIALIZED VIEW app.mv AS SELECT count(*) AS n FROM app.t;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER t_touch BEFORE UPDATE ON app.t FOR EACH ROW EXECUTE FUNCTION app.touch();
CREATE AGGREGATE app.total(int) (SFUNC = int4pl, STYPE = int4, INITCOND = '0');
ALTER TABLE app.t ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON app.t FOR UPDATE TO PUBLIC USING (owner = current_user) WITH CHECK (id > 0);
CREATE RULE no_delete AS ON DELETE TO app.v DO INSTEAD NOTHING;
"""


def test_a_down_that_undoes_every_kind_of_object_passes(tmp_path, online, pg_server):
    # Runs every branch of the snapshot query (aggregates, policies,
    # sequences, domains, ranges ...) on the server under test.
    d = write_migrations(tmp_path, ("001_app", EVERY_KIND_UP, "DROP SCHEMA app CASCADE;"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 0, r.err
    assert "every down restored the schema\n" in r.out


@pytest.mark.parametrize(("change", "restore", "expected"), [
    ("ALTER SEQUENCE app.counter INCREMENT 1;", "ALTER SEQUENCE app.counter INCREMENT 50;",
     "changed: sequence app.counter: 'AS bigint START 10 INCREMENT 5 "),
    ("DROP POLICY own ON app.t;",
     "CREATE POLICY own ON app.t FOR UPDATE TO PUBLIC USING (owner = current_user) WITH CHECK (id > 1);",
     "changed: policy own on app.t: 'AS PERMISSIVE FOR UPDATE TO PUBLIC USING (owner = CURRENT_USER) "
     "WITH CHECK (id > 0)' -> 'AS PERMISSIVE FOR UPDATE TO PUBLIC USING (owner = CURRENT_USER) "
     "WITH CHECK (id > 1)'"),
    ("ALTER DOMAIN app.short_text SET DEFAULT 'y';", "ALTER DOMAIN app.short_text DROP DEFAULT;",
     "changed: domain app.short_text: \"character varying(20) DEFAULT 'x'::character varying\" -> "
     "'character varying(20)'"),
    ("DROP AGGREGATE app.total(int);",
     "CREATE AGGREGATE app.total(int) (SFUNC = int4pl, STYPE = int4, INITCOND = '1');",
     "changed: aggregate app.total(integer): 'SFUNC = int4pl(integer,integer), STYPE = integer, "
     "INITCOND = 0' -> 'SFUNC = int4pl(integer,integer), STYPE = integer, INITCOND = 1'"),
], ids=["sequence", "policy", "domain", "aggregate"])
def test_a_down_that_restores_an_object_differently_is_reported(
        tmp_path, online, pg_server, change, restore, expected):
    d = write_migrations(tmp_path, ("001_app", EVERY_KIND_UP, "DROP SCHEMA app CASCADE;"),
                         ("002_change", change, restore))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_change did not restore the schema:" in r.err
    assert expected in r.err, r.err
    assert "down of 001_app" not in r.err


# --- ALTER TYPE ... ADD VALUE is irreversible, not a leak ----------------------

MOOD = ("001_mood", "CREATE TYPE mood AS ENUM ('happy');", "DROP TYPE mood;")


def test_an_enum_value_added_by_an_up_is_reported_irreversible_not_as_a_leak_of_its_down(
        tmp_path, online, pg_server):
    d = write_migrations(tmp_path, MOOD,
                         ("002_sad", "ALTER TYPE mood ADD VALUE 'sad';", "-- cannot be undone"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 0, r.err
    assert ("irreversible: ALTER TYPE mood ADD VALUE 'sad' (up of 002_sad; "
            "PostgreSQL cannot remove an enum value)") in r.out
    assert "OK: 2 up, 2 down, 2 up again; every down restored the schema " \
           "except 1 irreversible change" in r.out
    assert "changed" not in r.out + r.err


def test_enum_values_added_by_two_ups_are_each_irreversible_for_their_own_version(
        tmp_path, online, pg_server):
    d = write_migrations(tmp_path, MOOD,
                         ("002_sad", "ALTER TYPE mood ADD VALUE 'sad';", "-- cannot be undone"),
                         ("003_meh", "ALTER TYPE mood ADD VALUE 'meh' BEFORE 'sad';",
                          "-- cannot be undone"))
    r = migrate_test(online, pg_server, d)
    assert r.code == 0, r.err
    assert "irreversible: ALTER TYPE mood ADD VALUE 'meh' (up of 003_meh;" in r.out
    assert "irreversible: ALTER TYPE mood ADD VALUE 'sad' (up of 002_sad;" in r.out


def test_an_irreversible_enum_value_does_not_hide_what_the_same_down_left_behind(
        tmp_path, online, pg_server):
    d = write_migrations(
        tmp_path,
        ("001_mood", "CREATE TYPE mood AS ENUM ('happy');\nCREATE TABLE t (m mood);",
         "DROP TABLE t;\nDROP TYPE mood;"),
        ("002_sad", "ALTER TYPE mood ADD VALUE 'sad';\nALTER TABLE t ADD COLUMN note text;", NOOP))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_sad did not restore the schema:\n  left behind: column t.note\n" in r.err
    assert "irreversible: ALTER TYPE mood ADD VALUE 'sad' (up of 002_sad;" in r.err
    assert "enum mood" not in r.err


def test_an_enum_value_from_a_recreated_type_that_the_down_keeps_is_a_leak(tmp_path, online, pg_server):
    # Replacing the type (instead of ADD VALUE) can be undone, so keeping the
    # new value is the down's fault.
    d = write_migrations(
        tmp_path, MOOD,
        ("002_swap", "ALTER TYPE mood RENAME TO mood_old;\n"
                     "CREATE TYPE mood AS ENUM ('happy', 'sad');\nDROP TYPE mood_old;", NOOP))
    r = migrate_test(online, pg_server, d)
    assert r.code == 8
    assert "down of 002_swap did not restore the schema:" in r.err
    assert """changed: enum mood: '["happy"]' -> '["happy", "sad"]'""" in r.err
    assert "irreversible" not in r.out + r.err
