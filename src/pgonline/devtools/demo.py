"""``online demo``: the whole idea in one command, on a throw-away server.

Starts an embedded PostgreSQL (or uses a scratch database on ``--dsn``),
loads a ``users`` table, runs a small concurrent application workload, and
adds two columns while it runs: one through the metadata-only fast path and
one through the staged path with a batched backfill.  It prints how long each
change took and what the application saw (latency percentiles, errors).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio
import psycopg

from pgonline.connection import SessionSettings, connection, with_database
from pgonline.devtools.workload import Workload, WorkloadStats
from pgonline.engine.change import RunContext, run_command
from pgonline.engine.executor import ExecOptions
from pgonline.engine.progress import Progress
from pgonline.output import table
from pgonline.redaction import redact
from pgonline.registry import kind_of
from pgonline.strategies.add_column import plan_add_column


@dataclass(frozen=True)
class DemoChange:
    title: str
    seconds: float
    plan: str
    stats: dict[str, float | int]


async def _load_users(dsn: str, rows: int, out: Callable[[str], None]) -> None:
    t0 = time.monotonic()
    async with connection(dsn) as conn:
        await conn.execute(
            """
            CREATE TABLE users (
                id bigserial PRIMARY KEY,
                email text NOT NULL,
                hits integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        await conn.execute(
            """
            INSERT INTO users (email, created_at)
            SELECT 'user' || g || '@' || (ARRAY['example.com', 'mail.test', 'corp.example'])[g %% 3 + 1],
                   now() - g * interval '1 minute'
              FROM generate_series(1, %s) g
            """,
            [rows],
        )
        await conn.execute("VACUUM ANALYZE users")
    out(f"loaded {rows:,} rows into users in {time.monotonic() - t0:.1f}s")


def _window(stats: WorkloadStats, start: float, end: float) -> WorkloadStats:
    """The workload's statements that finished inside [start, end] (seconds since t0)."""
    w = WorkloadStats()
    w.latencies_ms = [ms for t, ms in stats.samples if start <= t <= end]
    w.ops = len(w.latencies_ms)
    return w


async def demo(*, rows: int, writers: int, dsn: str | None, out: Callable[[str], None],
               lock_timeout_ms: int = SessionSettings().lock_timeout_ms) -> list[DemoChange]:
    async with AsyncExitStack() as stack:
        if dsn is None:
            from pgonline.devtools.local_server import start_embedded

            out("starting an embedded PostgreSQL ...")
            server = await anyio.to_thread.run_sync(start_embedded)
            stack.callback(server.stop)
            target = server.dsn
            out(f"  {server.version}")
        else:
            # Never touch the user's own tables: work in a scratch database.
            scratch = f"pgonline_demo_{uuid.uuid4().hex[:8]}"
            async with connection(dsn) as admin:
                await admin.execute(f'CREATE DATABASE "{scratch}"')
            target = with_database(dsn, scratch)

            async def drop() -> None:
                async with connection(dsn) as admin:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')

            stack.push_async_callback(drop)
            out(f"using scratch database {scratch} on {redact(dsn)}")
        await _load_users(target, rows, out)
        ctx = RunContext(
            dsn=target,
            options=ExecOptions(settings=SessionSettings(lock_timeout_ms=lock_timeout_ms)),
            progress=Progress(),
            out=lambda _: None,
        )
        changes: list[tuple[str, float, float, str]] = []
        async with Workload(target, clients=writers, max_id=rows, rate_per_client=200,
                            write_ratio=0.5) as load:
            out(f"workload: {writers} clients, single-row reads and writes, 200 ops/s each")
            await anyio.sleep(3)  # baseline window
            for title, kwargs in (
                ("verified bool DEFAULT false NOT NULL",
                 {"column": "verified", "type_": "bool", "default": "false", "not_null": True}),
                ("email_domain text NOT NULL, backfilled from email",
                 {"column": "email_domain", "type_": "text", "default": "''", "not_null": True,
                  "backfill": "split_part(email, '@', 2)"}),
            ):
                out(f"\nonline add-column users {title}")
                start = time.monotonic() - load.t0
                outcome = await run_command(ctx, kind_of(plan_add_column), "users", **kwargs)
                end = time.monotonic() - load.t0
                changes.append((title, start, end, outcome.plan.notes[0] if outcome.plan.notes
                                else ""))
                await anyio.sleep(1)
        async with await psycopg.AsyncConnection.connect(target) as conn:
            cur = await conn.execute(
                "SELECT count(*) FILTER (WHERE email_domain = split_part(email, '@', 2)), count(*)"
                " FROM users")
            ok, total = await cur.fetchone() or (0, 0)
        baseline = _window(load.stats, 0, changes[0][1])
        results = [DemoChange(t, e - s, note, _window(load.stats, s, e).summary())
                   for t, s, e, note in changes]
        out("")
        out(table(
            ["", "duration", "workload ops", "p50 ms", "p99 ms", "worst ms"],
            [["baseline (no change)", f"{changes[0][1]:.1f}s", baseline.ops,
              f"{baseline.percentile(50):.1f}", f"{baseline.percentile(99):.1f}",
              f"{baseline.max_ms:.1f}"]]
            + [[c.title, f"{c.seconds:.2f}s", c.stats["ops"], c.stats["p50_ms"], c.stats["p99_ms"],
                c.stats["max_ms"]] for c in results],
        ))
        out(f"\nworkload: {load.stats.ops:,} statements, {len(load.stats.errors)} errors, "
            f"worst latency {load.stats.max_ms:.1f} ms (lock_timeout {lock_timeout_ms} ms)")
        out(f"check: {ok:,} of {total:,} rows have the backfilled value")
        return results
