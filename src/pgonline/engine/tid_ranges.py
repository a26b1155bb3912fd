"""Backfill batches by physical position: ranges of pages, for a table with no key.

A table with no primary key and no NOT NULL unique index has nothing to walk
in keyset order, but every row version has a physical position, its
``ctid`` (page, item).  PostgreSQL >= 14 scans a ``ctid`` range directly
(TID Range Scan), reading only those pages, so a batch is::

    UPDATE t SET ... WHERE ctid >= '(p,0)' AND ctid < '(q,0)' AND <predicate>

over the pages the table had when the backfill started.  Why this is safe:

* **Only idempotent fills are walked this way.** The predicate (``col IS
  NULL``, ``shadow IS NULL ...``) turns false once a row is done, and the
  value is a function of the row.  An UPDATE writes a new row version,
  possibly on a later page that the walk has still to visit. There the
  predicate, re-checked, skips it, so no row is changed twice.  ``online
  backfill --set`` is arbitrary (``hits = hits + 1``), so it is refused on such
  tables.
* **The predicate is re-checked under the row lock.** A row the application
  updates during a batch is re-read by the executor (EvalPlanQual), and
  the new version is skipped if it no longer matches or lies outside the range.
  A version the application wrote went through the plan's trigger (fill or
  sync), which set the value already: the walk only has to reach rows that
  nobody has written since the trigger was installed, and those do not move.
* **Nothing moves rows between pages but writes.** Plain VACUUM never
  relocates a live row.  VACUUM FULL, CLUSTER and pg_repack rewrite the table
  into a new file and renumber every page: the walk records the relation's file
  node when it starts, compares it when it reaches the end, and walks the
  whole table again if it changed.  Again, that is harmless because the fill
  is idempotent.
* Rows inserted after the start land beyond the recorded last page or in
  free space; either way they were written through the trigger.

The checkpoint keeps ``last_key = [next page]`` and ``max_key = [pages,
file node]``; batch sizes stay in rows, turned into pages with the table's
rows-per-page estimate.
"""

from __future__ import annotations

import math

from psycopg import sql

from pgonline.connection import Conn
from pgonline.engine.plan import BackfillSpec
from pgonline.sql.params import PARAM, with_params
from pgonline.sql.render import render

# The first major with TID Range Scans (a ctid range reads only its pages).
FIRST_MAJOR = 14


def _table(spec: BackfillSpec) -> sql.Identifier:
    return sql.Identifier(spec.schema, spec.table)


_EXTENT_QUERY = ("SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::bigint,"
                 " pg_relation_filenode(%s::regclass)::text")


async def extent(conn: Conn, spec: BackfillSpec) -> tuple[int, str]:
    """The table's pages now, and its file node (which a rewrite changes)."""
    name = render(_table(spec))
    cur = await conn.execute(_EXTENT_QUERY, [name, name])
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def update_query(spec: BackfillSpec) -> sql.SQL:
    """One batch: parameters ``first page, end page`` (exclusive), as ``'(p,0)'`` tids."""
    extra = sql.SQL("") if spec.where_sql is None else sql.SQL(" AND ({})").format(
        sql.SQL(spec.where_sql))
    return with_params(sql.SQL(
        "UPDATE {table} SET {set_sql} WHERE ctid >= {lo}::tid AND ctid < {hi}::tid{extra}"
    ).format(table=_table(spec), set_sql=sql.SQL(spec.set_sql), lo=PARAM, hi=PARAM, extra=extra))


def tid(page: int) -> str:
    """The first row position of ``page``: the bound of a page range."""
    return f"({page},0)"


def pages_for(rows: int, rows_total: int, pages_total: int) -> int:
    """Pages holding about ``rows`` rows, by the table's average rows per page."""
    per_page = max(1.0, rows_total / max(1, pages_total))
    return max(1, math.ceil(rows / per_page))
