"""Pre-flight data checks: would existing rows make a constraint change fail?

Read-only queries, run by the strategies' gather() *before* anything is changed, that
answer the question a DBA would otherwise ask by hand: how many rows are
NULL, violate a CHECK, reference a missing parent, or are duplicates, and
which ones (a few sample keys for the error message).  User expressions in
them were already parsed by pglast and planned by the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from pgonline.catalog.facts import DataViolations, TableFacts
from pgonline.connection import Conn
from pgonline.errors import UsageError
from pgonline.sql.server_errors import user_sql_error

SAMPLES = 5


def _sample_key(table: TableFacts) -> tuple[str, ...]:
    # ctid identifies a row when there is no key (it is what the server would report).
    return table.batch_key() or ("ctid",)


def _fmt(names: Sequence[str], values: Sequence[Any]) -> str:
    shown = ["NULL" if v is None else str(v) for v in values]
    return f"({', '.join(names)})=({', '.join(shown)})"


async def _run(conn: Conn, query: sql.Composed, what: str) -> list[tuple[Any, ...]]:
    try:
        cur = await conn.execute(query)
        return list(await cur.fetchall())
    except psycopg.Error as exc:
        if user_sql_error(exc):
            msg = exc.diag.message_primary or str(exc).strip()
            raise UsageError(f"{what}: {msg} ({exc.sqlstate})") from None
        raise


async def vet_boolean(conn: Conn, table: TableFacts, expression: str, what: str) -> None:
    """Have the server plan (never run) ``expression`` as a boolean over ``table``'s rows."""
    await _run(conn, sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE ({})").format(
        table.ident, sql.SQL(expression)), what)


async def count_nulls(conn: Conn, table: TableFacts, column: str) -> int:
    rows = await _run(conn, sql.SQL("SELECT count(*) FROM {} WHERE {} IS NULL").format(
        table.ident, sql.Identifier(column)), "counting NULLs")
    return int(rows[0][0])


async def _counted_samples(conn: Conn, inner: sql.Composed, labels: Sequence[str],
                           what: str, *, with_count: bool = False) -> DataViolations:
    """``inner`` selects the sample columns (then a group size if ``with_count``);
    count all its rows, keep a few as samples."""
    query = sql.SQL("SELECT count(*) OVER (), * FROM ({}) pgonline_v LIMIT {}").format(
        inner, sql.Literal(SAMPLES))
    rows = await _run(conn, query, what)
    if not rows:
        return DataViolations(0)
    if with_count:
        samples = tuple(f"{_fmt(labels, r[1:-1])} x{r[-1]}" for r in rows)
    else:
        samples = tuple(_fmt(labels, r[1:]) for r in rows)
    return DataViolations(int(rows[0][0]), samples)


async def check_violations(conn: Conn, table: TableFacts, expression: str) -> DataViolations:
    """Rows for which ``expression`` is false (a CHECK passes on true *and* NULL)."""
    key = _sample_key(table)
    inner = sql.SQL("SELECT {} FROM {} WHERE ({}) IS FALSE").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key),
        table.ident, sql.SQL(expression))
    return await _counted_samples(conn, inner, key, "bad CHECK expression")


async def orphans(conn: Conn, table: TableFacts, columns: Sequence[str], ref: TableFacts,
                  ref_columns: Sequence[str]) -> DataViolations:
    """Rows whose foreign key has no referenced row (MATCH SIMPLE: NULL keys are exempt)."""
    t, r = sql.Identifier("pgonline_t"), sql.Identifier("pgonline_r")
    cols = [sql.SQL("{}.{}").format(t, sql.Identifier(c)) for c in columns]
    inner = sql.SQL(
        "SELECT {} FROM {} {} WHERE {} AND NOT EXISTS (SELECT 1 FROM {} {} WHERE {})"
    ).format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(c) for c in cols),
        table.ident, t,
        sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in cols),
        ref.ident, r,
        sql.SQL(" AND ").join(
            sql.SQL("{}.{} = {}").format(r, sql.Identifier(rc), c)
            for rc, c in zip(ref_columns, cols, strict=True)),
    )
    return await _counted_samples(conn, inner, columns, "foreign key columns cannot be compared")


async def duplicates(conn: Conn, table: TableFacts, keys: Sequence[sql.Composable],
                     labels: Sequence[str], where: str | None = None) -> DataViolations:
    """The "find duplicates" query: groups of equal keys (none NULL) seen more than once."""
    n = len(keys)
    cond = [sql.SQL("({}) IS NOT NULL").format(k) for k in keys]
    if where is not None:
        cond.append(sql.SQL("({})").format(sql.SQL(where)))
    aliases = [sql.Identifier(f"pgonline_k{i}") for i in range(n)]
    grouped = sql.SQL(
        "SELECT {} , count(*) AS pgonline_n FROM {} WHERE {} GROUP BY {} HAVING count(*) > 1"
    ).format(
        sql.SQL(", ").join(sql.SQL("({}) AS {}").format(k, a) for k, a in zip(keys, aliases,
                                                                               strict=True)),
        table.ident, sql.SQL(" AND ").join(cond),
        sql.SQL(", ").join(sql.SQL(str(i + 1)) for i in range(n)),
    )
    inner = sql.SQL("SELECT {}, pgonline_n FROM ({}) pgonline_d ORDER BY pgonline_n DESC").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases), grouped)
    return await _counted_samples(conn, inner, labels, "cannot compare keys", with_count=True)
