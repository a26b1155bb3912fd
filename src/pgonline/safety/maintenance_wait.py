"""Do not queue a lock request behind a running VACUUM, ANALYZE or index build.

Maintenance holds a self-conflicting lock on the table for a long time:
(auto)VACUUM and (auto)ANALYZE, ``CREATE INDEX CONCURRENTLY``, ``REINDEX
CONCURRENTLY`` and ``CREATE STATISTICS`` hold SHARE UPDATE EXCLUSIVE, a plain
``CREATE INDEX`` holds SHARE.  Autovacuum is woken up by exactly the rows a
backfill has just rewritten.  A DDL statement asking for ACCESS EXCLUSIVE then
*waits*, and every application query on the table queues behind that waiting
request: the stall lasts until PostgreSQL cancels the autovacuum (after
``deadlock_timeout``, 1 s by default; never for an anti-wraparound one) or
until our ``lock_timeout`` expires, and a manual VACUUM or index build is never
cancelled.  Even a SHARE UPDATE EXCLUSIVE step (``VALIDATE``, our own index
builds) cannot get its lock within ``lock_timeout`` while one runs.

Waiting *outside* the lock queue until the holder has finished avoids the
stall altogether.  The wait is bounded (``SessionSettings.maintenance_wait_s``),
so a holder that never ends cannot keep a job forever: after the budget the
step queues under ``lock_timeout`` and retries as usual.

The application's own locks (ACCESS SHARE, ROW SHARE, ROW EXCLUSIVE) are not
waited for here: they are short, and ``lock_timeout`` plus retries deal with
them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import structlog

from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Step

log = structlog.get_logger("pgonline.safety.maintenance_wait")

# Table lock modes that conflict with themselves: taken by maintenance and DDL,
# never by plain reads and writes.
MAINTENANCE_MODES = ("ShareUpdateExclusiveLock", "ShareLock", "ShareRowExclusiveLock",
                     "ExclusiveLock", "AccessExclusiveLock")

_HOLDER = """
SELECT l.pid, l.mode, coalesce(a.backend_type, ''), coalesce(a.query, ''),
       coalesce(extract(epoch FROM clock_timestamp() - a.xact_start), 0)::float8
  FROM pg_locks l
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = to_regclass(%s)
   AND l.mode = ANY(%s)
   AND l.pid <> pg_backend_pid()
 ORDER BY a.xact_start NULLS LAST
 LIMIT 1
"""


@dataclass(frozen=True)
class Holder:
    pid: int
    mode: str
    backend_type: str
    query: str
    xact_age_s: float


async def maintenance_holder(conn: Conn, relation: str) -> Holder | None:
    """The oldest other session holding a maintenance-level lock on ``relation``."""
    cur = await conn.execute(_HOLDER, [relation, list(MAINTENANCE_MODES)])
    row = await cur.fetchone()
    if row is None:
        return None
    return Holder(pid=int(row[0]), mode=str(row[1]), backend_type=str(row[2]),
                  query=str(row[3]), xact_age_s=float(row[4]))


async def wait_for_maintenance(conn: Conn, relation: str, *, max_wait_s: float,
                               poll_s: float = 0.1) -> float:
    """Wait (at most ``max_wait_s``) while maintenance holds ``relation``; return seconds waited."""
    if not relation or max_wait_s <= 0:
        return 0.0
    t0 = time.monotonic()
    seen: set[int] = set()
    while time.monotonic() - t0 < max_wait_s:
        holder = await maintenance_holder(conn, relation)
        if holder is None:
            break
        if holder.pid not in seen:
            seen.add(holder.pid)
            log.info("waiting outside the lock queue for maintenance on the table",
                     relation=relation, pid=holder.pid, mode=holder.mode,
                     backend=holder.backend_type, query=holder.query[:200],
                     running_s=round(max(0.0, holder.xact_age_s), 1), max_wait_s=max_wait_s)
        await anyio.sleep(poll_s)
    waited = time.monotonic() - t0
    if seen:
        log.info("maintenance wait over", relation=relation, waited_s=round(waited, 2),
                 budget_left_s=round(max(0.0, max_wait_s - waited), 1))
    return waited


# Steps whose lock conflicts with a maintenance holder's: they would wait for it.
_WAITS_FOR_MAINTENANCE = (LockLevel.SHARE_UPDATE_EXCLUSIVE, LockLevel.SHARE,
                          LockLevel.SHARE_ROW_EXCLUSIVE, LockLevel.ACCESS_EXCLUSIVE)


def applies(step: Step) -> bool:
    return step.sql is not None and step.lock in _WAITS_FOR_MAINTENANCE
