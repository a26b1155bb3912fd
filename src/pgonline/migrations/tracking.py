"""The ``schema_migrations`` tracking table and the one-runner-at-a-time lock.

The table keeps the seed's shape, ``version`` (the up file's stem, e.g.
``006_add_user_photos``) and ``applied_at``, so a database migrated by the
seed's ``run-migrations.sh`` is *adopted*: the missing columns (``checksum``,
``duration_ms``, ``dirty``, ``error``) are added with ``ADD COLUMN IF NOT
EXISTS`` (catalog-only changes) and its rows are kept as applied.  Rows
recorded by the seed have no checksum; they are reported as unverified, not
as modified.

A *dirty* row marks a migration that ran outside a transaction and stopped
midway (or whose rollback did): the database holds part of it, so every
runner refuses to continue until a human repairs the schema and records the
truth with ``online migrate force``.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime

import anyio
from psycopg import sql

from pgonline.connection import Conn
from pgonline.errors import MigrationError, UsageError
from pgonline.migrations.discovery import flyway_number
from pgonline.sql.identifiers import QualifiedName

# Advisory lock key space of migration runners (``pgm``); the job journal uses
# ``pgo``, so a migration runner and a job never block each other by accident.
LOCK_NAMESPACE = 0x70676D
DEFAULT_TABLE = "schema_migrations"
_TEXT_TYPES = ("text", "character varying", "character")
_NUMBER = re.compile(r"^(\d+)")
_FLYWAY_VERSION = re.compile(r"^V(\d+(?:\.\d+)*)__")
# Second half of the lock key: the tracking table, qualified with the current
# schema when it was given unqualified (so both spellings share one lock).
_KEY = "hashtext(coalesce(%s, current_schema()) || '.' || %s)"


@dataclass(frozen=True)
class Applied:
    """One row of the tracking table."""

    version: str
    applied_at: datetime | None
    checksum: str | None
    duration_ms: int | None
    dirty: bool
    error: str | None

    @property
    def number(self) -> int | None:
        """The migration's number as discovery orders it (Flyway ``V1.2__x`` included)."""
        m = _FLYWAY_VERSION.match(self.version)
        if m:
            return flyway_number(m.group(1))
        m = _NUMBER.match(self.version)
        return int(m.group(1)) if m else None

    @property
    def is_down_record(self) -> bool:
        """A row the seed's shell loop wrote for a ``*_down.sql`` file it ran by mistake."""
        return self.version.endswith(("_down", ".down"))


class Tracker:
    """Reads and writes one tracking table through the runner's connection."""

    def __init__(self, conn: Conn, table: QualifiedName) -> None:
        if "%" in f"{table.schema or ''}{table.name}":
            # Its statements compose the name into parameterized queries, where
            # psycopg would read the "%" as a placeholder.
            raise UsageError(f"tracking table name {table} must not contain '%'")
        self.conn = conn
        self.table = table
        self.ident = table.ident()

    async def _columns(self) -> dict[str, str] | None:
        cur = await self.conn.execute(
            """
            SELECT a.attname, format_type(a.atttypid, NULL)
              FROM pg_attribute a
             WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
            """,
            [self.table.quoted()],
        )
        rows = await cur.fetchall()
        if not rows:
            exists = await (await self.conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", [self.table.quoted()])).fetchone()
            return {} if exists and exists[0] else None
        return {str(r[0]): str(r[1]) for r in rows}

    async def exists(self) -> bool:
        return await self._columns() is not None

    def _check_layout(self, cols: dict[str, str]) -> None:
        vtype = cols.get("version")
        if (vtype == "bigint" and "dirty" in cols) or set(cols) == {"version"}:
            tool = "golang-migrate" if vtype == "bigint" else "dbmate"
            raise MigrationError(
                f"{self.table} is {tool}'s tracking table",
                hint="record what it applied with `online migrate adopt DIR` (its table stays "
                     "as it is), or track elsewhere with --table NAME")
        if vtype is None or vtype not in _TEXT_TYPES:
            found = f"version {vtype}" if vtype else "no version column"
            raise MigrationError(
                f"{self.table} exists but is not a seed-style tracking table ({found})",
                hint="use another table with --table NAME, or rename the existing one",
            )

    async def ensure(self) -> list[str]:
        """Create the table, or adopt an existing seed-style one; return the columns added."""
        cols = await self._columns()
        if cols is None:
            await self.conn.execute(sql.SQL(
                """
                CREATE TABLE {} (
                    version text PRIMARY KEY,
                    applied_at timestamptz NOT NULL DEFAULT now(),
                    checksum text,
                    duration_ms bigint,
                    dirty boolean NOT NULL DEFAULT false,
                    error text
                )
                """).format(self.ident))
            return []
        self._check_layout(cols)
        wanted = {
            "applied_at": sql.SQL("timestamptz DEFAULT now()"),
            "checksum": sql.SQL("text"),
            "duration_ms": sql.SQL("bigint"),
            "dirty": sql.SQL("boolean NOT NULL DEFAULT false"),
            "error": sql.SQL("text"),
        }
        missing = [name for name in wanted if name not in cols]
        if missing:
            # ADD COLUMN with a constant default (or none) is a catalog-only
            # change: the adopted table is not rewritten.
            await self.conn.execute(sql.SQL("ALTER TABLE {} ").format(self.ident) + sql.SQL(", ").join(
                sql.SQL("ADD COLUMN IF NOT EXISTS {} {}").format(sql.Identifier(n), wanted[n])
                for n in missing))
        return missing

    async def rows(self) -> list[Applied]:
        cols = await self._columns()
        if cols is None:
            return []
        self._check_layout(cols)

        def col(name: str) -> sql.Composable:
            return sql.Identifier(name) if name in cols else sql.SQL("NULL")

        cur = await self.conn.execute(sql.SQL(
            "SELECT version, {}, {}, {}, {}, {} FROM {}").format(
            col("applied_at"), col("checksum"), col("duration_ms"), col("dirty"), col("error"),
            self.ident))
        out = [Applied(version=str(r[0]), applied_at=r[1], checksum=r[2],
                       duration_ms=None if r[3] is None else int(r[3]), dirty=bool(r[4]), error=r[5])
               for r in await cur.fetchall()]
        return sorted(out, key=lambda a: (a.number if a.number is not None else -1, a.version))

    async def record(self, version: str, checksum: str, duration_ms: int | None) -> None:
        """Mark ``version`` applied and clean (insert or update its row)."""
        cur = await self.conn.execute(sql.SQL(
            "UPDATE {} SET applied_at = now(), checksum = %s, duration_ms = %s, dirty = false, "
            "error = NULL WHERE version = %s").format(self.ident), [checksum, duration_ms, version])
        if cur.rowcount == 0:
            await self.conn.execute(sql.SQL(
                "INSERT INTO {} (version, checksum, duration_ms, dirty) VALUES (%s, %s, %s, false)"
            ).format(self.ident), [version, checksum, duration_ms])

    async def mark_dirty(self, version: str, checksum: str | None, error: str) -> None:
        cur = await self.conn.execute(sql.SQL(
            "UPDATE {} SET dirty = true, error = %s WHERE version = %s").format(self.ident),
            [error, version])
        if cur.rowcount == 0:
            await self.conn.execute(sql.SQL(
                "INSERT INTO {} (version, checksum, dirty, error) VALUES (%s, %s, true, %s)"
            ).format(self.ident), [version, checksum, error])

    async def remove(self, version: str) -> None:
        await self.conn.execute(sql.SQL("DELETE FROM {} WHERE version = %s").format(self.ident),
                                [version])


async def acquire_lock(conn: Conn, table: QualifiedName, wait_s: float) -> None:
    """Take the runner lock (session advisory lock), waiting at most ``wait_s`` seconds.

    Polling ``pg_try_advisory_lock`` instead of blocking in
    ``pg_advisory_lock`` bounds the wait and lets us name the holder.  The
    lock is tied to the session, so it is released even if this process is
    killed: the server ends the session and with it the lock.
    """
    key = [LOCK_NAMESPACE, table.schema, table.name]
    probe = f"SELECT pg_try_advisory_lock(%s::int, {_KEY})"
    deadline = time.monotonic() + max(0.0, wait_s)
    while True:
        row = await (await conn.execute(probe, key)).fetchone()
        if row and row[0]:
            return
        if time.monotonic() >= deadline:
            break
        await anyio.sleep(0.2)
    holder = await (await conn.execute(
        f"""
        SELECT a.pid, a.application_name
          FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s::int::oid
           AND l.objsubid = 2 AND l.objid::bigint = ({_KEY}::bigint + 4294967296) %% 4294967296
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
         LIMIT 1
        """, key)).fetchone()  # noqa: S608 (_KEY is a constant)
    who = f" (pid {holder[0]}, {holder[1] or 'no application_name'})" if holder else ""
    raise MigrationError(
        f"another migration runner holds the lock on {table}{who}; waited {wait_s:g}s",
        hint="wait for it to finish (see `online migrate status`), or raise --lock-wait",
    )


async def release_lock(conn: Conn, table: QualifiedName) -> None:
    await conn.execute(f"SELECT pg_advisory_unlock(%s::int, {_KEY})",
                       [LOCK_NAMESPACE, table.schema, table.name])
