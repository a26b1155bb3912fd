"""Connections and session settings.

Every connection pgonline opens identifies itself (``application_name``) so a
DBA can see and cancel it in ``pg_stat_activity``, and every DDL statement runs
under a short ``lock_timeout`` so that, while it waits for its lock, it never
queues application traffic behind it for longer than that.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgonline.errors import ConnectError, UsageError
from pgonline.redaction import redact

# The one alias for an async connection whatever its row factory; every layer uses it.
Conn = psycopg.AsyncConnection[Any]

APPLICATION_NAME = "pgonline"


@dataclass(frozen=True)
class SessionSettings:
    """Timeouts applied to our own sessions (milliseconds)."""

    # Application queries queue behind a DDL statement that *waits* for its
    # lock, so this bounds the stall we can cause.  Measured (benchmarks/): a
    # cut-over right after a big backfill waits ~1 s for autovacuum to be
    # cancelled (deadlock_timeout); with 500 ms we give up first and retry.
    lock_timeout_ms: int = 500
    # Before a step that would queue behind a running VACUUM, ANALYZE or index
    # build of the table, wait up to this long outside the lock queue for it
    # to finish (maintenance_wait.py).
    maintenance_wait_s: float = 120.0
    statement_timeout_ms: int = 30_000
    # DDL statements that only touch the catalog should finish at once once
    # they hold their lock; a long one means something is wrong.
    ddl_statement_timeout_ms: int = 60_000
    # VALIDATE CONSTRAINT and CREATE INDEX CONCURRENTLY scan the whole table
    # under a lock that does not block reads or writes, so they get no limit.
    scan_statement_timeout_ms: int = 0
    # max_parallel_maintenance_workers for our index builds; None keeps the
    # server's setting.  PostgreSQL's default (2) lets one CREATE INDEX
    # CONCURRENTLY take three cores: on a small server that is every core, and
    # the application's latency suffers (benchmarks/, 2 vCPUs: app p99 5.0 ms
    # during a parallel build, 1.8 ms during a serial one).  An online change
    # should be gentle by default; raise it on a server with cores to spare.
    maintenance_workers: int | None = 0
    # vacuum_cost_delay of our own VACUUM after a backfill (a manual VACUUM is
    # unthrottled by default; autovacuum's own default is 2 ms).
    vacuum_cost_delay_ms: float = 2.0


# With neither --dsn nor DATABASE_URL: an empty conninfo, which libpq completes
# the way psql does (PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD, PGSERVICE,
# PGSSLMODE, ~/.pgpass, then its built-in defaults).
LIBPQ_DEFAULTS = ""


def resolve_dsn(dsn: str | None) -> str:
    value = dsn or os.environ.get("DATABASE_URL") or LIBPQ_DEFAULTS
    try:
        conninfo_to_dict(value)
    except psycopg.ProgrammingError as exc:
        raise UsageError(f"invalid DSN: {redact(str(exc))}") from None
    return value


def with_database(dsn: str, dbname: str) -> str:
    params = conninfo_to_dict(dsn)
    params["dbname"] = dbname
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


async def connect(dsn: str, *, autocommit: bool = True,
                  connect_timeout_s: int = 10) -> psycopg.AsyncConnection[tuple[object, ...]]:
    try:
        conn = await psycopg.AsyncConnection.connect(
            dsn, autocommit=autocommit, application_name=APPLICATION_NAME,
            connect_timeout=connect_timeout_s,
        )
    except psycopg.OperationalError as exc:
        hint = None if dsn != LIBPQ_DEFAULTS else (
            "no --dsn or DATABASE_URL: libpq's defaults were used (PGHOST, PGPORT, PGUSER, "
            "PGDATABASE, PGSERVICE, ~/.pgpass); pass --dsn postgresql://user@host/db")
        raise ConnectError(f"cannot connect to PostgreSQL: {redact(str(exc)).strip()}",
                           hint=hint) from None
    return conn


@asynccontextmanager
async def connection(dsn: str, *, autocommit: bool = True) -> AsyncIterator[
    psycopg.AsyncConnection[tuple[object, ...]]
]:
    conn = await connect(dsn, autocommit=autocommit)
    try:
        yield conn
    finally:
        await conn.close()


def set_local(name: str, value_ms: int) -> sql.Composed:
    """``SET LOCAL <name> = '<n>ms'``: scoped to the current transaction only."""
    return sql.SQL("SET LOCAL {} = {}").format(sql.Identifier(name), sql.Literal(f"{value_ms}ms"))


def set_session(name: str, value_ms: int) -> sql.Composed:
    return sql.SQL("SET {} = {}").format(sql.Identifier(name), sql.Literal(f"{value_ms}ms"))


def timeouts(lock_ms: int, statement_ms: int | None = None, *, local: bool) -> sql.Composed:
    """``lock_timeout`` (and ``statement_timeout``) in one round trip.

    ``local`` scopes them to the current transaction (``SET LOCAL``); otherwise
    they hold for the session until :data:`RESET_TIMEOUTS`.
    """
    setter = set_local if local else set_session
    parts = [setter("lock_timeout", lock_ms)]
    if statement_ms is not None:
        parts.append(setter("statement_timeout", statement_ms))
    return sql.SQL("; ").join(parts)


RESET_TIMEOUTS = "RESET lock_timeout; RESET statement_timeout"


def session_setup(settings: SessionSettings) -> sql.Composed | None:
    """Session settings of the connection that runs our DDL (None: nothing to set).

    vacuum_cost_delay throttles only VACUUM and ANALYZE, which this session
    runs only as a plan's vacuum step.
    """
    parts = [sql.SQL("SET vacuum_cost_delay = {}").format(
        sql.Literal(f"{settings.vacuum_cost_delay_ms:g}ms"))]
    if settings.maintenance_workers is not None:
        parts.append(sql.SQL("SET max_parallel_maintenance_workers = {}").format(
            sql.Literal(settings.maintenance_workers)))
    return sql.SQL("; ").join(parts)

