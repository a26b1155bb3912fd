""""Did you mean ...?" for a mistyped table, column or index name."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from psycopg import sql

from pgonline.catalog.facts import TableFacts
from pgonline.connection import Conn
from pgonline.errors import CatalogError
from pgonline.sql.identifiers import QualifiedName
from pgonline.sql.render import render


def did_you_mean(name: str, candidates: Sequence[str], *, shown: Sequence[str] | None = None
                 ) -> str | None:
    """A hint naming the candidates closest to ``name`` (case-insensitively), or None.

    ``shown`` spells each candidate for the hint (e.g. schema-qualified), in
    the same order as ``candidates``.
    """
    spelt = dict(zip(candidates, shown if shown is not None else candidates, strict=True))
    lowered: dict[str, list[str]] = {}
    for c in candidates:
        lowered.setdefault(c.lower(), []).append(c)
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.6)
    names = [spelt[c] for key in close for c in lowered[key]][:3]
    if not names:
        return None
    return "did you mean " + " or ".join(names) + "?"


def _quoted(name: str) -> str:
    return render(sql.Identifier(name))


async def relation_hint(conn: Conn, name: QualifiedName, relkinds: Sequence[str]) -> str | None:
    """"did you mean ...?" among the relations of these kinds (tables: r, p; indexes: i, I)."""
    cur = await conn.execute(
        """SELECT n.nspname, c.relname, pg_catalog.pg_table_is_visible(c.oid)
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind = ANY(%s)
              AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline')
              AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp%%'
              AND (%s::text IS NULL OR n.nspname = %s)
            ORDER BY 3 DESC, 1, 2 LIMIT 10000""",
        [list(relkinds), name.schema, name.schema],
    )
    rows = await cur.fetchall()
    candidates = [str(r[1]) for r in rows]
    shown = [_quoted(str(r[1])) if r[2] and name.schema is None
             else f"{_quoted(str(r[0]))}.{_quoted(str(r[1]))}" for r in rows]
    return did_you_mean(name.name, candidates, shown=shown)


def missing_column(table: TableFacts, column: str) -> CatalogError:
    """"column does not exist", with the table's closest columns as the hint."""
    names = [c.name for c in table.columns]
    return CatalogError(
        f"column {_quoted(column)} does not exist in {table.display}",
        hint=did_you_mean(column, names, shown=[_quoted(n) for n in names])
        or f"see the columns with `\\d {table.display}` in psql",
    )
