"""Blockers of a cut-over step's lock: listed in the log, cancelled only when asked."""

from __future__ import annotations

import json
import threading
import time

import anyio
import psycopg

from pgonline.connection import SessionSettings
from pgonline.devtools.workload import Workload
from pgonline.engine.change import RunContext, run_command
from pgonline.engine.executor import ExecOptions
from pgonline.engine.progress import Progress
from pgonline.safety.throttle import Throttles
from tests.support.tables import columns, create_users, schema_snapshot

ADD = ["add-column", "users", "x", "int"]  # one metadata-only ALTER (ACCESS EXCLUSIVE)


def _events(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_blockers_of_our_lock_are_logged_with_pid_query_and_age(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    with psycopg.connect(db.info.dsn, application_name="app") as blocker:
        blocker.execute("SELECT count(*) FROM users")  # holds ACCESS SHARE, idle in transaction
        pid = blocker.info.backend_pid
        r = online("--log-format", "json", *ADD, "--lock-timeout", "400", "--max-retries", "3")
    assert r.code == 5, r.err  # gave up: lock unavailable, nothing changed
    assert schema_snapshot(db) == before
    events = _events(r.err)
    holders = [e for e in events if e["event"].startswith("session holds a conflicting lock")]
    assert holders and holders[0]["blocker_pid"] == pid
    assert holders[0]["mode"] == "AccessShareLock" and holders[0]["application"] == "app"
    assert holders[0]["state"] == "idle in transaction"
    assert "SELECT count(*) FROM users" in str(holders[0]["query"])
    waits = [e for e in events if e["event"] == "our lock request is blocked"]
    assert waits and waits[0]["blocker_pid"] == pid and float(str(waits[0]["age_s"])) >= 0
    # Off by default: nobody was cancelled.
    assert not any("cancel" in str(e["event"]) for e in events)


def test_cancel_blockers_after_cancels_a_long_query_blocking_the_cut_over(db, dsn, online):
    create_users(db, 500)
    state: dict[str, object] = {}
    ready = threading.Event()

    def long_report() -> None:
        with psycopg.connect(dsn, application_name="report") as c:
            c.execute("SELECT count(*) FROM users")
            state["pid"] = c.info.backend_pid
            ready.set()
            try:
                c.execute("SELECT pg_sleep(30)")
            except psycopg.errors.QueryCanceled as exc:
                state["cancelled"] = exc.sqlstate

    worker = threading.Thread(target=long_report)
    worker.start()
    assert ready.wait(10)
    time.sleep(0.2)
    t0 = time.monotonic()
    r = online("--log-format", "json", *ADD, "--lock-timeout", "300",
               "--cancel-blockers-after", "1")
    elapsed = time.monotonic() - t0
    worker.join(10)
    assert r.code == 0, r.err
    assert state.get("cancelled") == "57014"
    assert 1.0 <= elapsed < 20
    cancelled = [e for e in _events(r.err) if e["event"] == "cancelled blocking query"]
    assert len(cancelled) == 1 and cancelled[0]["blocker_pid"] == state["pid"]
    assert "pg_sleep(30)" in str(cancelled[0]["query"])
    assert "x" in columns(db, "users")


def test_cancel_blockers_does_not_touch_idle_in_transaction_sessions(db, online):
    create_users(db, 100)
    with psycopg.connect(db.info.dsn, application_name="app") as blocker:
        blocker.execute("SELECT count(*) FROM users")
        r = online("--log-format", "json", *ADD, "--lock-timeout", "300", "--max-retries", "6",
                   "--cancel-blockers-after", "0.5")
        # The session and its transaction survive: a cancel would not have ended it.
        assert blocker.execute("SELECT 1").fetchone() == (1,)
    assert r.code == 5, r.err
    events = _events(r.err)
    idle = [e for e in events if e["event"].startswith("blocker is idle in transaction")]
    assert idle and "pg_terminate_backend" in str(idle[0]["hint"])
    assert not any(e["event"] == "cancelled blocking query" for e in events)


def test_cancelling_a_blocker_spares_concurrent_application_writers(db, dsn):
    """Writers keep going (no error, no lost update) while the cut-over clears a long query."""
    create_users(db, 2000)
    state: dict[str, object] = {}
    ready = threading.Event()

    def long_report() -> None:
        with psycopg.connect(dsn, application_name="report") as c:
            c.execute("SELECT count(*) FROM users")
            ready.set()
            try:
                c.execute("SELECT pg_sleep(30)")
            except psycopg.errors.QueryCanceled:
                state["cancelled"] = True

    worker = threading.Thread(target=long_report)
    worker.start()
    assert ready.wait(10)

    async def scenario() -> Workload:
        ctx = RunContext(dsn=dsn, options=ExecOptions(
            settings=SessionSettings(lock_timeout_ms=200)), progress=Progress(bar=False),
            throttles=Throttles(cancel_blockers_after_s=1.0), out=lambda _: None)
        async with Workload(dsn, clients=3, max_id=2000, write_ratio=0.7) as w:
            await anyio.sleep(0.3)
            await _add_column(ctx, "users", "x", "int")
            await anyio.sleep(0.3)
        return w

    w = anyio.run(scenario)
    worker.join(10)
    assert state.get("cancelled") is True
    assert w.stats.errors == []
    assert w.stats.ops > 50
    hits = dict(db.execute("SELECT id, hits FROM users").fetchall())
    assert all(hits[i] == n for i, n in w.stats.increments.items())
    assert "x" in columns(db, "users")


def _add_column(ctx, *values, **options):
    """``online add-column VALUES...`` in-process."""
    return run_command(ctx, "add-column", *values, **options)
