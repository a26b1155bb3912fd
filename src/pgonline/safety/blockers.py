"""Who blocks our lock: listing (and, on request, cancelling) blocking sessions.

A cut-over step (a lock that blocks writes: SHARE, SHARE ROW EXCLUSIVE,
ACCESS EXCLUSIVE) runs under a short ``lock_timeout`` and is retried; each
failed attempt means some session holds a conflicting lock on the table,
usually a long or forgotten transaction.  The operator needs to know *which*
session, so before the step we log the sessions holding conflicting locks
(``pg_locks`` joined to ``pg_stat_activity``) and, while our statement waits,
the sessions ``pg_blocking_pids()`` names, each with pid, state, age and query.

``--cancel-blockers-after SECONDS`` (off by default) goes one step further for
cut-over steps: once our lock attempts have been failing for that long, each
session blocking our *current* wait gets ``pg_cancel_backend`` (its running
query is cancelled, which aborts its transaction and releases its locks; our
queued request is then first in line).  It is never a terminate: an
idle-in-transaction session ignores a cancel, and we say so in the log rather
than kill a connection the application owns.

All of this happens on a separate side connection, so the step's own session
stays exactly as it was (inside its transaction, waiting for its lock).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import psycopg
import structlog

from pgonline.connection import Conn, connect
from pgonline.engine.plan import LockLevel, Step
from pgonline.errors import LockUnavailableError, PgOnlineError

log = structlog.get_logger("pgonline.safety.blockers")
T = TypeVar("T")

# Locks that block the application's writes while they are held or queued:
# the steps whose waits we watch and (only if asked) clear.
CUTOVER_LOCKS = (LockLevel.SHARE, LockLevel.SHARE_ROW_EXCLUSIVE, LockLevel.ACCESS_EXCLUSIVE)

_ALL = ("AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
        "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
# PostgreSQL's table-level lock conflict matrix: held modes that conflict with ours.
CONFLICTS: dict[LockLevel, tuple[str, ...]] = {
    LockLevel.ACCESS_EXCLUSIVE: _ALL,
    LockLevel.SHARE_ROW_EXCLUSIVE: _ALL[2:],
    LockLevel.SHARE: ("RowExclusiveLock", "ShareUpdateExclusiveLock", *_ALL[5:]),
    LockLevel.SHARE_UPDATE_EXCLUSIVE: _ALL[3:],
    LockLevel.ROW_EXCLUSIVE: _ALL[4:],
    LockLevel.ACCESS_SHARE: _ALL[7:],
    LockLevel.NONE: (),
}


@dataclass(frozen=True)
class Blocker:
    pid: int
    user: str
    application: str
    state: str
    age_s: float
    mode: str
    query: str
    waiting: bool = False

    def fields(self) -> dict[str, Any]:
        return {"blocker_pid": self.pid, "user": self.user, "application": self.application,
                "state": self.state, "age_s": round(max(0.0, self.age_s), 1), "mode": self.mode,
                "query": self.query, "waiting_for_lock": self.waiting}


# Both queries return: pid, user, application, state, age, mode(s), query, waiting.
_HOLDERS_SQL = """
SELECT a.pid, coalesce(a.usename, '?'), coalesce(nullif(a.application_name, ''), '-'),
       coalesce(a.state, '?'),
       coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)), 0)::float8,
       string_agg(DISTINCT l.mode, ','), left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200),
       a.wait_event_type IS NOT DISTINCT FROM 'Lock'
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.relation = to_regclass(%(relation)s)
   AND l.granted
   AND l.mode = ANY(%(modes)s)
   AND l.pid <> ALL(%(exclude)s)
 GROUP BY 1, 2, 3, 4, 5, 7, 8
 ORDER BY 5 DESC
"""

_BLOCKING_SQL = """
SELECT a.pid, coalesce(a.usename, '?'), coalesce(nullif(a.application_name, ''), '-'),
       coalesce(a.state, '?'),
       coalesce(extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)), 0)::float8,
       '-', left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 200),
       a.wait_event_type IS NOT DISTINCT FROM 'Lock'
  FROM pg_stat_activity a
 WHERE a.pid = ANY(pg_blocking_pids(%(pid)s))
 ORDER BY 5 DESC
"""


def _blockers(rows: list[tuple[Any, ...]]) -> list[Blocker]:
    return [Blocker(int(r[0]), r[1], r[2], r[3], float(r[4]), r[5], r[6], bool(r[7]))
            for r in rows]


async def lock_holders(conn: Conn, relation: str, lock: LockLevel,
                       exclude_pids: list[int]) -> list[Blocker]:
    """Sessions holding a lock on ``relation`` that conflicts with ``lock``."""
    cur = await conn.execute(_HOLDERS_SQL, {"relation": relation, "modes": list(CONFLICTS[lock]),
                                           "exclude": exclude_pids})
    return _blockers(await cur.fetchall())


async def blocking(conn: Conn, pid: int) -> list[Blocker]:
    """Sessions that block ``pid``'s current lock wait (empty when it is not waiting)."""
    cur = await conn.execute(_BLOCKING_SQL, {"pid": pid})
    return _blockers(await cur.fetchall())


async def cancel_backend(conn: Conn, pid: int) -> bool:
    cur = await conn.execute("SELECT pg_cancel_backend(%s)", [pid])
    row = await cur.fetchone()
    return bool(row and row[0])


def _culprit(blockers: list[Blocker]) -> Blocker:
    """The session to name: one that holds the lock (not one queued like us), oldest first."""
    holding = [b for b in blockers if not b.waiting] or blockers
    return max(holding, key=lambda b: b.age_s)


def lock_hint(job_id: int, blocker: object | None) -> str:
    """What to do when job ``job_id`` gave up on a lock, naming the blocker if one was seen."""
    if isinstance(blocker, Blocker):
        query = " ".join(blocker.query.split())
        query = query if len(query) <= 100 else query[:97] + "..."
        # Advice text for the operator, never executed.
        end_it = f"SELECT pg_terminate_backend({blocker.pid})"
        return (f"pid {blocker.pid} ({blocker.user}, {blocker.application}, {blocker.state} for "
                f"{max(0.0, blocker.age_s):.0f}s) blocked it: {query!r}; once it is done, "
                f"`online resume {job_id}` (or end it: {end_it})")
    return (f"another session holds a conflicting lock or the batch keeps timing out; see "  # noqa: S608
            f"`SELECT * FROM pg_stat_activity`, then `online resume {job_id}`")


class LockWatch:
    """Watches one cut-over step's lock acquisition from a side connection."""

    def __init__(self, dsn: str, *, step: Step, relation: str, our_pid: int,
                 cancel_after_s: float | None, lock_timeout_ms: int = 2000) -> None:
        self.dsn = dsn
        self.step = step
        self.relation = relation
        self.our_pid = our_pid
        self.cancel_after_s = cancel_after_s
        # Poll several times per lock wait, so even a short lock_timeout is seen waiting.
        self.poll_s = max(0.02, min(0.25, lock_timeout_ms / 4000))
        self.seen: set[int] = set()
        self.cancelled: set[int] = set()
        self._started = 0.0
        # Who blocked us last: named by the give-up hint if the step runs out of attempts.
        self.last: Blocker | None = None

    @staticmethod
    def applies(step: Step) -> bool:
        return step.sql is not None and step.lock in CUTOVER_LOCKS

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` (the step with its retries) while watching who blocks it."""
        try:
            side = await connect(self.dsn)
        except PgOnlineError as exc:
            # Watching is diagnostics; never fail a step because we cannot watch it.
            log.warning("cannot open a connection to watch lock blockers", error=exc.message)
            return await fn()
        self._started = time.monotonic()
        error: Exception | None = None
        try:
            await self._log_holders(side)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._monitor, side)
                try:
                    result = await fn()
                except Exception as exc:  # re-raised below, outside the task group
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await side.close()
        if error is not None:
            if isinstance(error, LockUnavailableError) and self.last is not None:
                error.blocker = self.last
            raise error
        return result

    async def _log_holders(self, side: Conn) -> None:
        # A step that locks several tables (a cut-over across a foreign key)
        # names them; blockers found later come from pg_blocking_pids, any table.
        for relation in self.step.tables or (self.relation,):
            try:
                holders = await lock_holders(side, relation, self.step.lock, [self.our_pid])
            except psycopg.Error as exc:
                log.warning("cannot list lock holders", step=self.step.id, error=str(exc).strip())
                return
            if holders:
                self.last = _culprit(holders)
            for b in holders:
                log.warning("session holds a conflicting lock; our step will wait for it",
                            step=self.step.id, table=relation, lock=str(self.step.lock),
                            **b.fields())

    async def _monitor(self, side: Conn) -> None:
        while True:
            await anyio.sleep(self.poll_s)
            # Shielded: a query interrupted half-way would leave the side
            # connection unusable; each one is a quick catalog read.
            with anyio.CancelScope(shield=True):
                try:
                    await self._check(side)
                except psycopg.Error as exc:
                    log.warning("lock watch query failed", step=self.step.id,
                                error=str(exc).strip())
                    return

    async def _check(self, side: Conn) -> None:
        blockers = await blocking(side, self.our_pid)
        waited = time.monotonic() - self._started
        if blockers:
            self.last = _culprit(blockers)
        for b in blockers:
            if b.pid not in self.seen:
                self.seen.add(b.pid)
                log.warning("our lock request is blocked", step=self.step.id,
                            table=self.relation, lock=str(self.step.lock),
                            waited_s=round(waited, 1), **b.fields())
        if self.cancel_after_s is None or waited < self.cancel_after_s:
            return
        for b in blockers:
            if b.pid in self.cancelled:
                continue
            if b.waiting:
                # Queued ahead of us behind the same holder: cancelling it
                # would hurt the application and gain us nothing.
                continue
            if b.age_s < self.cancel_after_s:
                # A transaction younger than our wait is not what kept us out
                # for that long (typically a short application write that
                # will end by itself); leave it alone.
                continue
            self.cancelled.add(b.pid)
            if b.state.startswith("idle in transaction"):
                # A cancel only interrupts a running query; this session has
                # none, so its locks stay.  Terminating it is the DBA's call.
                log.warning("blocker is idle in transaction; a cancel cannot release its locks",
                            step=self.step.id, hint=f"SELECT pg_terminate_backend({b.pid})",
                            **b.fields())
                continue
            ok = await cancel_backend(side, b.pid)
            log.warning("cancelled blocking query" if ok else "could not cancel blocking query",
                        step=self.step.id, waited_s=round(waited, 1),
                        cancel_blockers_after_s=self.cancel_after_s, **b.fields())
