"""``online migrate test``: each down is judged alone, on full definitions, and irreversible ups are named.

Every directory is written in the seed's layout (``NNN_name.sql`` +
``NNN_name_down.sql``) and run through the CLI against the session's real
server, so the messages asserted are the ones a user reads.
"""

from __future__ import annotations

from pathlib import Path

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
