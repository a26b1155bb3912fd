"""pg_stat_activity and load throttles, option validation, and the adaptive batch controller."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgonline.engine.backfill import BatchOptions, next_batch_size
from pgonline.errors import UsageError
from pgonline.safety.lag import LagLimit, parse_lag
from pgonline.safety.load import validate_select
from tests.support.tables import create_users, schema_snapshot

SLOW = ["--batch-size", "100", "--min-batch-size", "50", "--max-batch-size", "100",
        "--throttle-interval", "0.2"]
ADD = ["add-column", "users", "t", "uuid", "--default", "gen_random_uuid()"]


def _events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def _throttled(err: str) -> list[str]:
    return [str(e["reason"]) for e in _events(err) if e["event"] == "throttled"]


@pytest.fixture
def app_session(dsn: str) -> Iterator[psycopg.Connection]:  # type: ignore[type-arg]
    with psycopg.connect(dsn, application_name="app") as conn:
        yield conn


def test_long_idle_in_transaction_session_pauses_the_backfill_until_it_ends(db, online,
                                                                             app_session):
    create_users(db, 500)
    # Opens a transaction, then idles (it holds no lock on users, so the
    # ADD COLUMN step is not blocked; the backfill is throttled by its age).
    app_session.execute("SELECT 'app work'")
    pid = app_session.info.backend_pid
    time.sleep(1.2)
    timer = threading.Timer(2.0, app_session.commit)
    timer.start()
    try:
        t0 = time.monotonic()
        r = online("--log-format", "json", *ADD, *SLOW, "--max-xact-age", "1")
    finally:
        timer.cancel()
    assert r.code == 0, r.err
    reasons = _throttled(r.err)
    assert reasons and f"pid {pid}" in reasons[0] and "idle in transaction" in reasons[0]
    assert "SELECT 'app work'" in reasons[0]
    assert time.monotonic() - t0 >= 1.5  # it did wait for the commit
    assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)


def test_our_own_sessions_do_not_count_as_long_transactions(db, online):
    create_users(db, 300)
    with psycopg.connect(db.info.dsn, application_name="pgonline") as ours:
        ours.execute("SELECT 1")  # an old pgonline transaction (another job's runner)
        time.sleep(1.1)
        r = online("--log-format", "json", *ADD, *SLOW, "--max-xact-age", "1")
    assert r.code == 0, r.err
    assert _throttled(r.err) == []


def test_active_sessions_above_the_limit_pause_the_backfill(db, dsn, online):
    create_users(db, 300)

    def busy() -> None:
        with psycopg.connect(dsn, application_name="app", autocommit=True) as c:
            c.execute("SELECT pg_sleep(2.5)")

    worker = threading.Thread(target=busy)
    worker.start()
    time.sleep(0.5)
    r = online("--log-format", "json", *ADD, *SLOW, "--max-active-sessions", "0")
    worker.join()
    assert r.code == 0, r.err
    reasons = _throttled(r.err)
    assert reasons and reasons[0].startswith("load: 1 active sessions (> --max-active-sessions 0)")


def test_throttle_query_pauses_while_its_number_exceeds_the_maximum(db, online):
    create_users(db, 300)
    db.execute("CREATE TABLE hold (x int)")
    db.execute("INSERT INTO hold VALUES (1), (2)")

    def release() -> None:
        with psycopg.connect(db.info.dsn, autocommit=True) as c:
            c.execute("DELETE FROM hold")

    timer = threading.Timer(1.5, release)
    timer.start()
    try:
        r = online("--log-format", "json", *ADD, *SLOW,
                   "--throttle-query", "SELECT count(*) FROM hold", "--throttle-max", "1")
    finally:
        timer.cancel()
    assert r.code == 0, r.err
    assert _throttled(r.err)[0] == "throttle query: 2 > --throttle-max 1"
    assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)


@pytest.mark.parametrize(("args", "message"), [
    (["--throttle-query", "DELETE FROM users", "--throttle-max", "1"], "must be a SELECT"),
    (["--throttle-query", "SELECT 1; SELECT 2", "--throttle-max", "1"], "exactly one statement"),
    (["--throttle-query", "WITH d AS (DELETE FROM users RETURNING 1) SELECT count(*) FROM d",
      "--throttle-max", "1"], "data-modifying DELETE"),
    (["--throttle-query", "SELECT 1 FROM users FOR UPDATE", "--throttle-max", "1"], "row-locking"),
    (["--throttle-query", "SELEC 1", "--throttle-max", "1"], "not valid SQL"),
    (["--throttle-query", "SELECT 1"], "go together"),
    (["--max-lag", "ten"], "invalid --max-lag"),
    (["--max-lag", "10parsecs"], "invalid --max-lag unit"),
    (["--replica-dsn", "postgresql://x/y"], "--replica-dsn needs --max-lag"),
])
def test_bad_throttle_options_are_usage_errors_and_change_nothing(db, online, args, message):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online(*ADD, *args)
    assert r.code == 2, r.err
    assert message in r.err and "hint:" in r.err
    assert schema_snapshot(db) == before


def test_throttle_query_failing_at_runtime_fails_before_any_change(db, online):
    create_users(db, 10)
    before = schema_snapshot(db)
    r = online(*ADD, "--throttle-query", "SELECT count(*) FROM no_such_table",
               "--throttle-max", "1")
    assert r.code == 4 and "--throttle-query failed" in r.err, r.err
    r = online(*ADD, "--throttle-query", "SELECT 'x'", "--throttle-max", "1")
    assert r.code == 4 and "not a number" in r.err, r.err
    assert schema_snapshot(db) == before


def test_throttle_query_runs_read_only_even_if_it_calls_a_writing_function(db, online):
    create_users(db, 10)
    db.execute("CREATE TABLE side (x int)")
    db.execute("CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql "
               "AS $$ INSERT INTO side VALUES (1) RETURNING 0 $$")
    r = online(*ADD, "--throttle-query", "SELECT sneaky()", "--throttle-max", "1")
    assert r.code == 4 and "read-only transaction" in r.err, r.err
    assert db.execute("SELECT count(*) FROM side").fetchone() == (0,)


def test_watcher_options_go_to_every_command_that_can_backfill_and_cutover_ones_to_all(online):
    from pgonline.cli.main import _load_plugins, cli
    from pgonline.registry import known_commands

    _load_plugins()
    with_dry_run = [c for c in cli.commands.values() if any(p.name == "dry_run" for p in c.params)]
    assert {"add-column", "resume", "rollback"} <= {c.name for c in with_dry_run}
    backfills = {k for k, d in known_commands().items() if d.backfills} | {"resume"}
    assert {"add-column", "set-not-null", "change-type", "rename-column", "backfill"} <= backfills
    for c in with_dry_run:
        names = {p.name for p in c.params}
        assert "cancel_blockers_after" in names, c.name
        watchers = {"max_lag", "max_xact_age", "throttle_query"}
        assert (watchers <= names) == (c.name in backfills), c.name


def test_lag_limits_parse_times_and_wal_sizes():
    assert parse_lag("10") == LagLimit(seconds=10)
    assert parse_lag("500ms") == LagLimit(seconds=0.5)
    assert parse_lag("2min") == LagLimit(seconds=120)
    assert parse_lag("64kB") == LagLimit(bytes=65536)
    assert parse_lag("16MB") == LagLimit(bytes=16 * 1024**2)
    assert LagLimit(seconds=1).exceeded(1.5, None) == "1.5s behind (> --max-lag 1.0s)"
    assert LagLimit(bytes=1024).exceeded(None, 512) is None
    with pytest.raises(UsageError):
        parse_lag("-1s")


def test_throttle_query_validation_accepts_plain_selects():
    assert validate_select(" SELECT count(*) FROM pg_stat_activity; ") == \
        "SELECT count(*) FROM pg_stat_activity"
    assert validate_select("WITH a AS (SELECT 1 AS x) SELECT x FROM a") is not None


# --- adaptive batch size controller (backfill.next_batch_size) -------------------------

OPTS = BatchOptions(initial_size=1000, min_size=50, max_size=20_000, target_ms=200)


def test_batch_size_grows_when_batches_are_fast_and_shrinks_when_slow():
    assert next_batch_size(1000, 100, OPTS) > 1000
    assert next_batch_size(1000, 400, OPTS) < 1000
    assert next_batch_size(1000, 200, OPTS) == 1000


def test_batch_size_changes_are_smoothed_to_at_most_x1_5_or_x0_75_per_batch():
    assert next_batch_size(1000, 1, OPTS) == 1500
    assert next_batch_size(1000, 60_000, OPTS) == 750


def test_batch_size_stays_within_min_and_max():
    assert next_batch_size(60, 60_000, OPTS) == 50
    assert next_batch_size(19_000, 1, OPTS) == 20_000
    assert next_batch_size(20_000, 0, OPTS) == 20_000


def test_batch_size_converges_to_the_target_duration_without_oscillating():
    # A table where a batch costs 0.1 ms per row: 2000 rows hit the 200 ms target.
    size, sizes = 100, []
    for _ in range(40):
        size = next_batch_size(size, size * 0.1, OPTS)
        sizes.append(size)
    assert abs(sizes[-1] - 2000) <= 20
    tail = sizes[-10:]
    assert max(tail) - min(tail) <= 20


def test_backfill_batch_that_times_out_is_retried_smaller(db, online):
    """A batch blocked past its lock_timeout shrinks (halves) before it is retried."""
    create_users(db, 400)
    assert online(*ADD, "--phase", "expand").code == 0
    blocker = psycopg.connect(db.info.dsn, application_name="app")
    blocker.execute("SELECT * FROM users WHERE id = 1 FOR UPDATE")
    timer = threading.Timer(1.5, blocker.commit)
    timer.start()
    try:
        r = online("--log-format", "json", "resume", "1", "--phase", "backfill",
                   "--batch-size", "400", "--min-batch-size", "50", "--max-batch-size", "400",
                   "--lock-timeout", "200", "--target-batch-ms", "100000")
    finally:
        timer.cancel()
        blocker.close()
    assert r.code == 0, r.err
    events = _events(r.err)
    assert any(e["event"] == "retrying" and "backfill" in str(e["step"]) for e in events)
    first = next(e for e in events if e["event"] == "backfill progress")
    assert int(str(first["batch_size"])) < 400
    assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)
