"""Helpers for the column-change tests (change-type, rename-column, drop-column)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from pgonline.connection import SessionSettings, connect
from pgonline.devtools import workload as workload_module
from pgonline.devtools.workload import Workload
from pgonline.engine.backfill import BatchOptions
from pgonline.engine.change import RunContext
from pgonline.engine.executor import ExecOptions
from pgonline.engine.plan import Phase
from pgonline.engine.progress import Progress

LOCK_TIMEOUT_MS = 500
# The slowest application statement may wait one lock_timeout behind our DDL,
# plus scheduling slack on a shared two-core machine.
MAX_APP_LATENCY_MS = LOCK_TIMEOUT_MS + 1000


def ctx(dsn: str, *, phase: Phase | None = None, batch: int = 200, sleep_ms: int = 20) -> RunContext:
    return RunContext(
        dsn=dsn,
        options=ExecOptions(
            settings=SessionSettings(lock_timeout_ms=LOCK_TIMEOUT_MS),
            # Small, paced batches: the backfill lasts long enough for the
            # application to write rows while it runs.
            batch=BatchOptions(initial_size=batch, min_size=50, max_size=batch * 2,
                               sleep_ms=sleep_ms, max_attempts=30),
            max_attempts=30, phase=phase,
        ),
        progress=Progress(bar=False),
        out=lambda _: None,
    )


def without_prepared_statements(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make Workload clients send plain (unprepared) statements.

    A type change alters the result type of ``SELECT id, hits``; statements a
    session prepared before the cut-over then fail with 0A000 "cached plan
    must not change result type" (PostgreSQL behaviour, whatever tool changes
    the type; documented in docs/strategies/change-type.md).  Applications
    that re-prepare, or do not prepare (PgBouncer transaction pooling), see
    no error; that is what these clients model.
    """
    async def unprepared(dsn: str, **kw: Any) -> psycopg.AsyncConnection[Any]:
        conn = await connect(dsn, **kw)
        conn.prepare_threshold = None
        return conn

    monkeypatch.setattr(workload_module, "connect", unprepared)


Change = Callable[[RunContext], Awaitable[Any]]


def run_phases_under_load(dsn: str, change: Change, *, max_id: int,
                          phases: Sequence[Phase | None] = (Phase.EXPAND, Phase.BACKFILL,
                                                            Phase.CONTRACT),
                          between: Callable[[Phase | None, Workload], Awaitable[None]] | None = None,
                          **workload_kw: Any) -> Workload:
    """Run ``change`` once per phase while a Workload keeps reading and writing."""

    async def scenario() -> Workload:
        async with Workload(dsn, clients=4, max_id=max_id, **workload_kw) as w:
            await anyio.sleep(0.2)
            for phase in phases:
                await change(ctx(dsn, phase=phase))
                if between is not None:
                    await between(phase, w)
                await anyio.sleep(0.2)
        return w

    return anyio.run(scenario)


def assert_no_lost_update(db: psycopg.Connection[Any], w: Workload, table: str) -> None:
    query = sql.SQL("SELECT id, hits FROM {}").format(sql.Identifier(table))
    hits = dict(db.execute(query).fetchall())
    assert all(hits[i] == n for i, n in w.stats.increments.items())
    assert sum(hits.values()) == sum(w.stats.increments.values())


def assert_app_never_stalled(w: Workload) -> None:
    assert w.stats.errors == []
    assert w.stats.ops > 100
    assert w.stats.max_ms < MAX_APP_LATENCY_MS, w.stats.summary()


def wait_for_checkpoint(db: psycopg.Connection[Any], minimum: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            row = db.execute("SELECT sum(rows_done) FROM pgonline.checkpoints").fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row and row[0] is not None and row[0] >= minimum:
            return int(row[0])
        time.sleep(0.05)
    raise AssertionError("backfill made no progress")


def job_status(db: psycopg.Connection[Any], job: int = 1) -> str:
    row = db.execute("SELECT status FROM pgonline.jobs WHERE id = %s", [job]).fetchone()
    assert row is not None
    return str(row[0])


def trigger_names(db: psycopg.Connection[Any], table: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal "
        "ORDER BY tgname", [table]).fetchall()]


SLOW_BATCHES = ["--batch-size", "200", "--min-batch-size", "200", "--max-batch-size", "200",
                "--sleep-ms", "40"]
