"""User SQL cannot escape its slot: every breakout attempt exits 2 and changes nothing.

Each option's text is parsed standalone as one expression (or one ``col = expr``
list) and the SQL we run is rendered from that parse, so text that closes the
parentheses we wrap it in, or comments out what follows, is refused up front.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.tables import create_users, schema_snapshot


def _jobs(db: psycopg.Connection[Any]) -> int:
    if db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,):
        return 0
    return int(db.execute("SELECT count(*) FROM pgonline.jobs").fetchone()[0])


@pytest.fixture
def users(db):
    create_users(db, 100)
    return schema_snapshot(db)


@pytest.mark.parametrize("args", [
    ["backfill", "users", "--set", "hits = hits + 1", "--where", "true) or (true"],
    ["backfill", "users", "--set", "hits = hits + 1", "--where", "id = 1) or (true"],
    ["backfill", "users", "--set", "hits = hits + 1) , hits = (0"],
    ["backfill", "users", "--set", "hits = 1 WHERE true"],
    ["add-column", "users", "c", "int", "--default", "1); drop table users; --"],
    ["add-column", "users", "c", "int", "--default", "0) + (1"],
    ["add-column", "users", "c", "int", "--backfill", "1) --"],
    ["add-column", "users", "c", "int", "--backfill", "1) , email = (email"],
    ["add-column", "users", "c", "int); drop table users; --"],
    ["set-not-null", "users", "email", "--backfill", "'x') , hits = (0"],
    ["change-type", "users", "hits", "bigint", "--using", "hits) ; select (1"],
    ["change-type", "users", "hits", "bigint", "--using", "hits + 1) --"],
    ["change-type", "users", "hits", "bigint); drop table users; --"],
    ["add-check", "users", "hits_positive", "hits > 0) or (true"],
    ["add-check", "users", "hits_positive", "hits >= 0) NOT VALID --"],
    ["add-index", "users", "email", "--where", "true) or (true"],
    ["add-index", "users", "--expression", "lower(email)), (id"],
], ids=lambda a: " ".join(a[:1] + a[3:]))
def test_breakout_attempt_exits_2_and_changes_nothing(db, online, users, args):
    hits = db.execute("SELECT sum(hits) FROM users").fetchone()
    r = online(*args)
    assert r.code == 2, (r.code, r.err)
    assert "Traceback" not in r.err and r.err.startswith("error: ")
    # Refused by the parse, not by some later check the text happened to trip.
    assert any(m in r.err for m in ("is not valid SQL", "must be a single SQL expression",
                                    "must be `col = expr")), r.err
    assert schema_snapshot(db) == users
    assert db.execute("SELECT sum(hits) FROM users").fetchone() == hits
    assert _jobs(db) == 0


def test_backfill_where_updates_only_matching_rows_once_and_breakout_is_refused(db, online):
    # Issue #9: `--where "true) or (true"` passed validation and every batch
    # updated the whole table, so hits ended at 10 instead of 1.
    create_users(db, 100)
    batches = ["--batch-size", "10", "--min-batch-size", "10", "--max-batch-size", "10"]
    r = online("backfill", "users", "--set", "hits = hits + 1", "--where", "true) or (true",
               *batches)
    assert r.code == 2, r.err
    assert "--where 'true) or (true' is not valid SQL" in r.err
    assert db.execute("SELECT sum(hits) FROM users").fetchone() == (0,)
    r = online("backfill", "users", "--set", "hits = hits + 1", "--where", "id % 2 = 0", *batches)
    assert r.code == 0, r.err
    assert db.execute("SELECT id % 2, min(hits), max(hits) FROM users GROUP BY 1 ORDER BY 1"
                      ).fetchall() == [(0, 1, 1), (1, 0, 0)]


def test_legitimate_expressions_with_parentheses_and_dashes_in_strings_work(db, online):
    create_users(db, 20)
    r = online("backfill", "users", "--set", "email = split_part(email, '@', 1) || ') -- x'",
               "--where", "email LIKE '%1%@%' AND hits IS NOT NULL -- note")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM users WHERE email LIKE '%) -- x'").fetchone() == (11,)
    r = online("add-column", "users", "tag", "text", "--default", "$$it's ) --$$")
    assert r.code == 0, r.err
    assert db.execute("SELECT DISTINCT tag FROM users").fetchall() == [("it's ) --",)]


def test_a_trailing_comment_is_dropped_not_allowed_to_eat_our_sql(db, online):
    create_users(db, 20)
    r = online("backfill", "users", "--set", "hits = hits + 1 -- set", "--where", "id = 1 --")
    assert r.code == 0, r.err
    assert db.execute("SELECT id FROM users WHERE hits > 0").fetchall() == [(1,)]
    r = online("add-index", "users", "--expression", "lower(email) -- key", "--where",
               "hits > 0 /* partial */")
    assert r.code == 0, r.err
    (indexdef,) = db.execute("SELECT pg_get_indexdef('users_lower_idx'::regclass)").fetchone()
    assert indexdef.endswith("(lower(email)) WHERE (hits > 0)")
