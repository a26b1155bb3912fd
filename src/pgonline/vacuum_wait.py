"""Do not queue a blocking lock request behind a running VACUUM.

A VACUUM (often autovacuum, woken up by the rows a backfill just rewrote)
holds SHARE UPDATE EXCLUSIVE on the table.  A DDL statement asking for ACCESS
EXCLUSIVE then *waits*, and every application query on the table queues
behind that waiting request: the stall lasts until PostgreSQL cancels the
autovacuum (after ``deadlock_timeout``, 1 s by default) or until our
``lock_timeout`` expires.  Waiting *outside* the lock queue until the vacuum
has finished avoids the stall altogether; the wait is bounded, so an
anti-wraparound vacuum (never cancelled) cannot hold a job forever.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import psycopg
import structlog

log = structlog.get_logger("pgonline.vacuum_wait")
Conn = psycopg.AsyncConnection[Any]

_RUNNING_VACUUM = """
SELECT p.pid, a.backend_type, coalesce(a.query, '')
  FROM pg_stat_progress_vacuum p
  LEFT JOIN pg_stat_activity a ON a.pid = p.pid
 WHERE p.relid = to_regclass(%s)
 LIMIT 1
"""


async def running_vacuum(conn: Conn, relation: str) -> tuple[int, str, str] | None:
    cur = await conn.execute(_RUNNING_VACUUM, [relation])
    row = await cur.fetchone()
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


async def wait_for_vacuum(conn: Conn, relation: str, *, max_wait_s: float,
                          poll_s: float = 0.1) -> float:
    """Wait (at most ``max_wait_s``) while a VACUUM of ``relation`` runs; return seconds waited."""
    if not relation or max_wait_s <= 0:
        return 0.0
    t0 = time.monotonic()
    logged = False
    while time.monotonic() - t0 < max_wait_s:
        found = await running_vacuum(conn, relation)
        if found is None:
            break
        if not logged:
            pid, backend, query = found
            log.info("waiting for vacuum before taking a blocking lock", relation=relation, pid=pid,
                     backend=backend, query=query[:200], max_wait_s=max_wait_s)
            logged = True
        await anyio.sleep(poll_s)
    waited = time.monotonic() - t0
    if logged:
        log.info("vacuum wait over", relation=relation, waited_s=round(waited, 2))
    return waited
