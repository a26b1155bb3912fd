"""Table references as written in SQL, and how two spellings of a table match.

The linter reasons about tables before (or without) asking the catalog, so a
reference keeps the schema only when the SQL names one.  ``users`` and
``public.users`` are considered the same table when one side is unqualified:
for migration files that is nearly always true, and the catalog (``--dsn``)
resolves the search path exactly when it is available.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TableRef:
    schema: str | None
    name: str

    @classmethod
    def of(cls, range_var: Any) -> TableRef:
        """From a pglast ``RangeVar`` (names there are already case-folded)."""
        return cls(range_var.schemaname or None, range_var.relname)

    @classmethod
    def from_names(cls, names: tuple[Any, ...] | list[Any]) -> TableRef:
        """From a list of pglast ``String`` nodes such as DROP TABLE's objects."""
        parts = [n.sval for n in names]
        return cls(parts[-2] if len(parts) >= 2 else None, parts[-1])

    def matches(self, other: TableRef) -> bool:
        if self.name != other.name:
            return False
        return self.schema is None or other.schema is None or self.schema == other.schema

    def regclass_text(self) -> str:
        """Quoted text for ``to_regclass`` (identifiers quoted by psycopg, never by hand)."""
        # Only --dsn needs this: psycopg loads here, not with the linter (80 ms).
        from psycopg import sql

        from pgonline.sql.render import render

        parts = (self.schema, self.name) if self.schema else (self.name,)
        return render(sql.Identifier(*parts))

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def contains_ref(refs: set[TableRef] | frozenset[TableRef], ref: TableRef) -> bool:
    # Most files create no table: the empty set answers without a generator.
    return bool(refs) and any(r.matches(ref) for r in refs)


def without_ref(refs: set[TableRef], ref: TableRef) -> set[TableRef]:
    return {r for r in refs if not r.matches(ref)}
