"""The two observers of a benchmark run, each in its own process.

* ``workload_main`` drives :class:`pgonline.devtools.workload.Workload` (the
  application: fixed-rate single-row reads and ``hits = hits + 1`` updates)
  and records every statement's latency and every error with its time.
* ``monitor_main`` polls ``pg_locks`` every few milliseconds from a separate
  connection and records each continuous ACCESS EXCLUSIVE hold (and wait) on
  the target table, plus the wait events of the application's sessions.

Both run in separate processes so that neither the migration's Python code
nor the other observer can delay them (no shared GIL, no shared event loop).
Times are ``time.monotonic()``, which on Linux is one system-wide clock, so
they line up with the orchestrator's migration start/end marks.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import anyio
import psycopg
from psycopg import sql

APP_WORKLOAD = "bench-app"
APP_MONITOR = "bench-monitor"
APP_NAIVE = "bench-naive"
APP_SEED = "bench-seed"
APP_PGONLINE = "pgonline"
OUR_APPS = (APP_PGONLINE, APP_NAIVE, APP_SEED)
# Table lock modes that conflict with the application's ROW EXCLUSIVE (its
# UPDATEs): holding one stops writes; only ACCESS EXCLUSIVE also stops reads.
WRITE_BLOCKING = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")


class TimedErrors(list[str]):
    """``WorkloadStats.errors`` replacement that also remembers when each error happened."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def append(self, item: str) -> None:
        self.times.append(time.monotonic())
        super().append(item)


# Set by workload_main: the share of the application's statements whose
# server-side duration is logged (0: none).
_SAMPLE_RATE = 0.0


async def _app_connect(dsn: str, *, autocommit: bool = True) -> psycopg.AsyncConnection[Any]:
    # The application must not call itself "pgonline": the lock monitor tells
    # our sessions from the application's by application_name.
    conn = await psycopg.AsyncConnection.connect(
        dsn, autocommit=autocommit, application_name=APP_WORKLOAD, connect_timeout=10
    )
    if _SAMPLE_RATE >= 1:
        # Only the application's sessions log durations: the server log then
        # holds the time PostgreSQL itself spent on each statement (parse, bind,
        # execute), to set against the latency the client sees.
        await conn.execute("SET log_min_duration_statement = 0")
    elif _SAMPLE_RATE > 0:
        # A random sample of them (PostgreSQL 13+): a log line per statement
        # costs latency of its own, a sample costs that much less, and the
        # statements it leaves out are no different from the ones it keeps.
        await conn.execute("SET log_min_duration_sample = 0")
        await conn.execute(sql.SQL("SET log_statement_sample_rate = {}").format(
            sql.Literal(str(_SAMPLE_RATE))))
    return conn


def workload_main(dsn: str, table: str, clients: int, rate: float, max_id: int,
                  stop: Event, ready: Event, out_path: str, sample_rate: float = 0.0) -> None:
    global _SAMPLE_RATE
    import pgonline.devtools.workload as wl

    _SAMPLE_RATE = sample_rate
    wl.connect = _app_connect  # type: ignore[attr-defined]

    async def main() -> dict[str, Any]:
        w = wl.Workload(dsn, table=table, clients=clients, max_id=max_id, rate_per_client=rate)
        errors = TimedErrors()
        w.stats.errors = errors
        async with w:
            ready.set()
            while not stop.is_set():
                await anyio.sleep(0.05)
        return {
            "t0": w.t0,
            "samples": [[round(w.t0 + t, 6), round(ms, 3)] for t, ms in w.stats.samples],
            "errors": [[round(t, 6), msg] for t, msg in zip(errors.times, errors, strict=True)],
            "increments": {str(k): v for k, v in w.stats.increments.items()},
            "ops": w.stats.ops,
        }

    try:
        data = anyio.run(main)
    except BaseException as exc:  # report, never hang the orchestrator
        ready.set()
        data = {"crashed": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(data))


LOCKS_AND_WAITS = """
SELECT 'lock', l.pid, a.application_name, l.virtualtransaction, l.granted, c.relname,
       l.mode, NULL::text
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
  LEFT JOIN pg_class c ON c.oid = l.relation
 WHERE l.locktype = 'relation' AND l.database = %(db)s AND l.mode = ANY(%(modes)s)
   AND (l.relation = %(oid)s
        OR (c.relname = %(name)s AND c.relnamespace = 'public'::regnamespace))
UNION ALL
SELECT 'wait', a.pid, a.application_name, NULL, NULL, NULL, a.wait_event_type, a.wait_event
  FROM pg_stat_activity a
 WHERE a.application_name = ANY(%(apps)s) AND a.state = 'active'
   AND a.wait_event IS NOT NULL AND a.pid <> pg_backend_pid()
"""


def monitor_main(dsn: str, table_oid: int, table_name: str, interval_s: float,
                 stop: Event, ready: Event, out_path: str) -> None:
    """Record continuous write-blocking lock holds/waits on the table, and wait events."""
    holds: list[dict[str, Any]] = []
    open_: dict[tuple[Any, ...], dict[str, Any]] = {}
    waits: list[list[Any]] = []
    polls: list[float] = []
    prev_t: float | None = None
    try:
        with psycopg.connect(dsn, autocommit=True, application_name=APP_MONITOR) as conn:
            row = conn.execute(
                "SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
            assert row is not None
            params = {"db": row[0], "oid": table_oid, "name": table_name,
                      "apps": [APP_WORKLOAD, *OUR_APPS], "modes": list(WRITE_BLOCKING)}
            conn.execute("SET statement_timeout = '1s'")
            ready.set()
            while not stop.is_set():
                t = time.monotonic()
                rows = conn.execute(LOCKS_AND_WAITS, params, prepare=True).fetchall()
                polls.append(t)
                seen: set[tuple[Any, ...]] = set()
                for kind, pid, app, vxid, granted, rel, wtype, wevent in rows:
                    if kind == "wait":
                        waits.append([round(t, 6), app, f"{wtype}:{wevent}"])
                        continue
                    key = (pid, vxid, rel, granted, wtype)
                    seen.add(key)
                    if key not in open_:
                        open_[key] = {"pid": pid, "app": app, "rel": rel, "granted": granted,
                                      "mode": wtype, "first": t, "last": t, "before": prev_t}
                    open_[key]["last"] = t
                for key in [k for k in open_ if k not in seen]:
                    hold = open_.pop(key)
                    hold["after"] = t
                    holds.append(hold)
                prev_t = t
                time.sleep(max(0.0, interval_s - (time.monotonic() - t)))
    except BaseException as exc:  # report, never hang the orchestrator
        ready.set()
        Path(out_path).write_text(json.dumps({"crashed": f"{type(exc).__name__}: {exc}"}))
        return
    for hold in open_.values():
        hold["after"] = None
        holds.append(hold)
    Path(out_path).write_text(json.dumps({"holds": holds, "waits": waits, "polls": polls}))


def hold_bounds(hold: dict[str, Any]) -> tuple[float, float]:
    """(lower, upper) bound of a hold in ms: seen from ``first`` to ``last`` poll; it may
    have started just after the poll before and ended just before the poll after."""
    lower = (hold["last"] - hold["first"]) * 1000
    start = hold["before"] if hold["before"] is not None else hold["first"]
    end = hold["after"] if hold["after"] is not None else hold["last"]
    return lower, (end - start) * 1000


def wait_counts(waits: list[list[Any]], app: str, lo: float, hi: float) -> dict[str, int]:
    return dict(Counter(ev for t, a, ev in waits if a == app and lo <= t <= hi).most_common())
