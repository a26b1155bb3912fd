"""Replication lag watchers: pause the backfill while a replica falls behind.

A backfill writes WAL as fast as the primary can absorb it; replicas replay
it single-threaded, so an unthrottled backfill is the classic way to leave
read replicas minutes behind (stale reads, failover that loses or waits for
data).  These throttles stop the next batch while any replica is further
behind than ``--max-lag``; the batch already committed is never affected.

Two ways of measuring, both against the same limit:

* on the primary (default): ``pg_stat_replication`` lists every connected
  standby (and logical walsender); bytes behind are
  ``pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)``, time behind is
  ``replay_lag``.  Reading the LSN columns needs ``pg_monitor`` (or
  superuser); :meth:`PrimaryLag.prepare` checks this before the job starts.
* on a replica (``--replica-dsn``, repeatable): bytes received but not yet
  replayed, and ``now() - pg_last_xact_replay_timestamp()`` while WAL is
  waiting to be replayed.  That time is an over-estimate after an idle period
  (the last replayed commit may be old), which errs on the safe side: the
  pause ends as soon as replay catches up.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass

import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from pgonline.connection import Conn, connect
from pgonline.errors import PgOnlineError, PreflightError, UsageError
from pgonline.redaction import redact

log = structlog.get_logger("pgonline.safety.lag")

_TIME_UNITS = {"ms": 0.001, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
_BYTE_UNITS = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3, "tb": 1024**4}
_LAG = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


@dataclass(frozen=True)
class LagLimit:
    """At most ``seconds`` or ``bytes`` behind (exactly one is set)."""

    seconds: float | None = None
    bytes: int | None = None

    def __str__(self) -> str:
        return fmt_seconds(self.seconds) if self.seconds is not None else fmt_bytes(self.bytes or 0)

    def exceeded(self, lag_s: float | None, lag_bytes: int | None) -> str | None:
        """How far behind, if beyond this limit; ``None`` when within it (or unknown)."""
        if self.seconds is not None and lag_s is not None and lag_s > self.seconds:
            return f"{fmt_seconds(lag_s)} behind (> --max-lag {self})"
        if self.bytes is not None and lag_bytes is not None and lag_bytes > self.bytes:
            return f"{fmt_bytes(lag_bytes)} behind (> --max-lag {self})"
        return None


def parse_lag(text: str) -> LagLimit:
    """``10`` / ``10s`` / ``500ms`` / ``2min`` are times; ``64kB`` / ``16MB`` / ``1GB`` are WAL bytes."""
    m = _LAG.match(text)
    if not m:
        raise UsageError(f"invalid --max-lag {text!r}",
                         hint="give seconds (10, 10s, 500ms, 2min) or WAL bytes (64kB, 16MB, 1GB)")
    value, unit = float(m.group(1)), m.group(2).lower()
    if unit in ("", *_TIME_UNITS):
        return LagLimit(seconds=value * _TIME_UNITS.get(unit, 1.0))
    if unit in _BYTE_UNITS:
        return LagLimit(bytes=int(value * _BYTE_UNITS[unit]))
    raise UsageError(f"invalid --max-lag unit {m.group(2)!r}",
                     hint="units: ms, s, min, h for time; B, kB, MB, GB, TB for WAL bytes")


def fmt_seconds(s: float) -> str:
    return f"{s * 1000:.0f}ms" if s < 1 else f"{s:.1f}s"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.1f}{unit}"
        size /= 1024
    return f"{size:.1f}TB"


_PRIMARY_SQL = """
SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local') AS name,
       state,
       sent_lsn IS NOT NULL AS visible,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS lag_bytes,
       CASE WHEN replay_lsn >= pg_current_wal_lsn() THEN 0
            ELSE extract(epoch FROM replay_lag)::float8 END AS lag_s
  FROM pg_stat_replication
 ORDER BY lag_bytes DESC NULLS FIRST
"""


class PrimaryLag:
    """Pause while any standby in ``pg_stat_replication`` lags more than ``limit``."""

    def __init__(self, limit: LagLimit) -> None:
        self.limit = limit
        self._warned_none = False

    def __repr__(self) -> str:
        return f"replication lag on primary <= {self.limit}"

    async def prepare(self, conn: Conn) -> None:
        cur = await conn.execute("SELECT pg_is_in_recovery()")
        row = await cur.fetchone()
        if row and row[0]:
            raise PreflightError("--max-lag: the target server is a standby",
                                 hint="point --dsn at the primary")
        cur = await conn.execute(_PRIMARY_SQL)
        rows = await cur.fetchall()
        if any(not r[2] for r in rows):
            raise PreflightError(
                "--max-lag: this role cannot read replica positions in pg_stat_replication",
                hint="GRANT pg_monitor TO <this role>, or measure on the replica with --replica-dsn",
            )
        if not rows:
            log.warning("no replica connected to the primary; --max-lag has nothing to watch")
            self._warned_none = True

    async def reason(self, conn: Conn) -> str | None:
        cur = await conn.execute(_PRIMARY_SQL)
        for name, state, _visible, lag_bytes, lag_s in await cur.fetchall():
            behind = self.limit.exceeded(lag_s, lag_bytes)
            if behind:
                return f"replica lag: {name} ({state}) is {behind}"
        return None


_REPLICA_SQL = """
SELECT pg_is_in_recovery(),
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
"""


def replica_name(dsn: str) -> str:
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return redact(dsn)
    return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"


class ReplicaLag:
    """Pause while the standby at ``dsn`` has WAL it has not replayed for longer than ``limit``."""

    def __init__(self, dsn: str, limit: LagLimit) -> None:
        self.dsn = dsn
        self.limit = limit
        self.name = replica_name(dsn)
        self._conn: Conn | None = None

    def __repr__(self) -> str:
        return f"replication lag on replica {self.name} <= {self.limit}"

    async def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            self._conn = await connect(self.dsn)
        return self._conn

    async def _measure(self) -> tuple[bool, int | None, float | None]:
        conn = await self._connection()
        cur = await conn.execute(_REPLICA_SQL)
        row = await cur.fetchone()
        assert row is not None
        return bool(row[0]), row[1], row[2]

    async def prepare(self, conn: Conn) -> None:
        in_recovery, _, _ = await self._measure()
        if not in_recovery:
            raise PreflightError(f"--replica-dsn {self.name} is not a standby (not in recovery)",
                                 hint="give the DSN of a streaming replica of the target")

    async def reason(self, conn: Conn) -> str | None:
        try:
            _, lag_bytes, lag_s = await self._measure()
        except (psycopg.Error, PgOnlineError) as exc:
            # Running blind is what the watcher exists to prevent: wait, and say why.
            await self.aclose()
            msg = getattr(exc, "message", None) or str(exc).strip().splitlines()[0]
            return f"replica lag: cannot reach replica {self.name}: {redact(msg)}"
        if lag_s is None and lag_bytes and self.limit.seconds is not None:
            # WAL is waiting but no commit has been replayed yet to time it
            # (a freshly started standby): assume behind until replay catches up.
            return (f"replica lag: {self.name} has {fmt_bytes(lag_bytes)} of WAL not replayed "
                    f"(no replayed commit yet to measure its delay)")
        behind = self.limit.exceeded(lag_s, lag_bytes)
        return f"replica lag: {self.name} is {behind}" if behind else None

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(psycopg.Error):
                await conn.close()
