"""Citus: is the table a distributed or reference table?  Then we refuse it (for now).

On a Citus coordinator, ``pg_catalog.pg_dist_partition`` lists every table
Citus manages, one row per table (``logicalrelid``), with its distribution
method (``partmethod``: ``h`` hash, ``a`` append, ``r`` range, ``n`` none)
and replication model (``repmodel``: ``t`` for reference tables, which are
copied to every node).  Our plans assume one server: a backfill batch, a
``CREATE INDEX CONCURRENTLY`` or a trigger on a distributed table would run
on the coordinator's empty shell or be propagated by Citus with semantics
our steps do not account for (docs/scale.md works through each strategy).
Until that is built, such tables are refused at planning time, before any
job exists; tables Citus does not list are ordinary local tables and
proceed exactly as on plain PostgreSQL.

Only ``pg_catalog`` is looked at, where Citus creates the table: a user
table that happens to be called ``pg_dist_partition`` elsewhere on the
search path is not Citus metadata.  The row is read as JSON so that a
catalog without ``repmodel`` (older Citus, or a test stub) still answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgonline.connection import Conn
from pgonline.errors import CatalogError

_METADATA = "SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL"
_ROW = ("SELECT to_jsonb(p) ->> 'partmethod', to_jsonb(p) ->> 'repmodel'"
        "  FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = to_regclass(%s)")

DOC = "docs/scale.md"


@dataclass(frozen=True)
class Distribution:
    partmethod: str
    repmodel: str | None

    @property
    def kind(self) -> str:
        """What Citus calls the table, for the refusal message."""
        if self.partmethod == "h":
            return "a hash-distributed table"
        if self.partmethod in ("a", "r"):
            return f"an {'append' if self.partmethod == 'a' else 'range'}-distributed table"
        if self.repmodel == "s":
            return "a Citus-managed local table"
        return "a reference table"


async def distribution(conn: Conn, regclass_text: str) -> Distribution | None:
    """The table's row in pg_dist_partition (None: not Citus-managed, or no Citus at all)."""
    cur = await conn.execute(_METADATA)
    row = await cur.fetchone()
    if not (row and row[0]):
        return None
    cur = await conn.execute(_ROW, [regclass_text])
    found = await cur.fetchone()
    if found is None:
        return None
    return Distribution(str(found[0]), None if found[1] is None else str(found[1]))


async def refuse_distributed(conn: Conn, regclass_text: str, shown: str) -> None:
    """CatalogError (exit 3) when Citus distributes ``regclass_text``; return for local tables."""
    dist = await distribution(conn, regclass_text)
    if dist is None:
        return
    raise CatalogError(
        f"{shown} is {dist.kind} in Citus (pg_dist_partition partmethod '{dist.partmethod}'); "
        "pgonline does not change Citus distributed or reference tables yet",
        hint=f"see {DOC} for how each change would run on Citus and what is refused; "
             "local tables on this node are changed as usual")
