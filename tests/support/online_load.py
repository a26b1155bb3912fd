"""Running ``online`` while application traffic hits the table, and killing it mid-step."""

from __future__ import annotations

import functools
import subprocess
import time
from typing import Any

import anyio
import anyio.to_thread
import psycopg

from pgonline.devtools.workload import Workload, WorkloadStats

LOCK_TIMEOUT_MS = 500
# Our DDL may hold application queries back for at most lock_timeout while it
# waits for its lock; the margin covers CI noise on a shared 2-core machine.
MAX_LATENCY_MS = LOCK_TIMEOUT_MS + 1000


async def _under_load(dsn: str, argv: list[str], *, table: str, max_id: int,
                      clients: int) -> tuple[int, WorkloadStats]:
    from pgonline.cli.main import run

    async with Workload(dsn, table=table, clients=clients, max_id=max_id) as load:
        await anyio.sleep(0.3)  # traffic is flowing before the change starts
        code = await anyio.to_thread.run_sync(run, [*argv, "--dsn", dsn])
        await anyio.sleep(0.3)
    return code, load.stats


def online_under_load(dsn: str, *args: str, table: str = "users", max_id: int,
                      clients: int = 4) -> tuple[int, WorkloadStats]:
    """Run the CLI in a worker thread while a Workload runs; return (exit code, stats)."""
    argv = [*args, "--lock-timeout", str(LOCK_TIMEOUT_MS)]
    return anyio.run(functools.partial(_under_load, dsn, argv, table=table, max_id=max_id,
                                       clients=clients))


def assert_stayed_online(stats: WorkloadStats) -> None:
    assert stats.ops > 50, stats.summary()
    assert stats.errors == [], stats.errors[:5]
    assert stats.max_ms < MAX_LATENCY_MS, stats.summary()


def wait_for(db: psycopg.Connection[Any], query: str, timeout_s: float = 30.0) -> None:
    """Poll until ``query`` returns true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = db.execute(query).fetchone()
        if row and row[0]:
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {query}")


def crash(proc: subprocess.Popen[str], db: psycopg.Connection[Any]) -> None:
    """kill -9 the ``online`` process and cut its sessions, as a host crash would."""
    proc.kill()
    proc.wait(timeout=30)
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'pgonline' AND datname = current_database()"
    )
    wait_for(db, "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity"
                 " WHERE application_name = 'pgonline' AND datname = current_database())")
