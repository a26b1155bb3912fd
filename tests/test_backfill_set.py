"""backfill (UPDATE ... SET in keyset batches) on a real server."""

from __future__ import annotations

import pytest
from pgonline.strategies.backfill_set import parse_assignments

from pgonline.errors import UsageError
from tests.conftest import spawn_online
from tests.support.online_load import assert_stayed_online, crash, online_under_load, wait_for
from tests.support.tables import create_users, schema_snapshot


def test_parse_assignments_folds_names_and_keeps_expressions():
    cols, vals = parse_assignments('email = lower(email), "Hits" = hits + 1 -- note')
    assert cols == ("email", "Hits")
    assert vals == ("lower(email)", "hits + 1")


@pytest.mark.parametrize("text", [
    "email = 'x' WHERE true",
    "email = 'x'; DROP TABLE users",
    "email = 'x' RETURNING id",
    "(email, hits) = ('x', 1)",
    "email[1] = 'x'",
    "email = (SELECT 'x')",
    "email = 'x', email = 'y'",
    "email",
    "",
])
def test_parse_assignments_refuses_anything_but_plain_assignments(text):
    with pytest.raises(UsageError):
        parse_assignments(text)


def test_updates_matching_rows_under_load_without_lost_updates(db, dsn):
    create_users(db, 20_000)
    code, stats = online_under_load(
        dsn, "backfill", "users", "--set", "email = upper(email)", "--where", "id % 2 = 0",
        "--batch-size", "500", max_id=20_000)
    assert code == 0
    assert_stayed_online(stats)
    assert db.execute("SELECT count(*) FROM users WHERE email = upper(email)").fetchone() == (
        10_000,)
    assert db.execute("SELECT count(*) FROM users WHERE id % 2 = 1 AND email <> lower(email)"
                      ).fetchone() == (0,)
    assert db.execute("SELECT sum(hits) FROM users").fetchone()[0] == sum(
        stats.increments.values())


def test_rerun_after_a_crash_updates_every_row_exactly_once(db, dsn, online):
    create_users(db, 20_000)
    args = ["backfill", "users", "--set", "hits = hits + 1000", "--batch-size", "100",
            "--max-batch-size", "100", "--sleep-ms", "30"]
    proc = spawn_online(args, dsn)
    wait_for(db, "SELECT EXISTS (SELECT 1 FROM users WHERE hits >= 1000)")
    crash(proc, db)
    assert 0 < db.execute("SELECT count(*) FROM users WHERE hits = 0").fetchone()[0] < 20_000
    r = online(*args)
    assert r.code == 0, r.err
    assert "resumed" in r.out
    # The checkpoint commits with each batch: no row skipped, none updated twice.
    assert db.execute("SELECT min(hits), max(hits) FROM users").fetchone() == (1000, 1000)


def test_dry_run_shows_the_batched_update(db, online):
    create_users(db, 10)
    r = online("backfill", "users", "--set", "email = NULL", "--where", "hits > 5", "--dry-run")
    assert r.code == 0, r.err
    assert "[backfill] backfill" in r.out and "lock: ROW EXCLUSIVE" in r.out
    assert 'UPDATE "public"."users" SET "email" = (NULL)' in r.out and "(hits > 5)" in r.out
    assert db.execute("SELECT count(*) FROM users WHERE email IS NULL").fetchone() == (0,)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["nope", "--set", "email = 'x'"], 3, "does not exist"),
    (["users", "--set", "nope = 1"], 3, "does not exist"),
    (["users", "--set", "id = id + 1"], 3, "batch key"),
    (["users", "--set", "hits = 'abc'"], 2, "bad backfill expression"),
    (["users", "--set", "email = nope(1)"], 2, "bad backfill expression"),
    (["users", "--set", "email = 'x'; drop table users"], 2, "--set"),
    (["users", "--set", "email = 'x'", "--where", "nope"], 2, "bad WHERE predicate"),
    (["users", "--set", "email = 'x'", "--where", "true; drop table users"], 2, "--where"),
    (['"users; drop table users"', "--set", "email = 'x'"], 3, "does not exist"),
])
def test_bad_input_is_refused_and_changes_nothing(db, online, args, code, message):
    create_users(db, 10)
    before = schema_snapshot(db)
    data = db.execute("SELECT * FROM users ORDER BY id").fetchall()
    r = online("backfill", *args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err and "Traceback" not in r.err
    assert schema_snapshot(db) == before
    assert db.execute("SELECT * FROM users ORDER BY id").fetchall() == data


def test_a_lone_max_batch_size_lowers_the_default_batch_instead_of_being_refused(db, online):
    create_users(db, 300)
    r = online("backfill", "users", "--set", "hits = hits + 1", "--max-batch-size", "50")
    assert r.code == 0, r.err
    (size, batches) = db.execute("SELECT batch_size, batches FROM pgonline.checkpoints").fetchone()
    assert size <= 50 and batches >= 6
    assert db.execute("SELECT min(hits), max(hits) FROM users").fetchone() == (1, 1)


def test_batch_sizes_the_user_gave_that_contradict_each_other_are_refused(db, online):
    create_users(db, 10)
    r = online("backfill", "users", "--set", "hits = 1", "--batch-size", "100",
               "--max-batch-size", "50")
    assert r.code == 2 and "--min-batch-size <= --batch-size <= --max-batch-size" in r.err
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)
