"""Catalog facts: what strategies may know about the database.

These are plain, immutable values gathered by :mod:`pgonline.catalog.tables`.
Strategies receive them as arguments and never query anything themselves,
which is what makes planning testable and dry-runs exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from pgonline.sql.render import render


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    type: str
    not_null: bool
    default: str | None = None


@dataclass(frozen=True)
class IndexFacts:
    schema: str
    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool
    valid: bool
    has_expressions: bool
    predicate: str | None
    definition: str


@dataclass(frozen=True)
class ConstraintFacts:
    name: str
    type: str  # pg_constraint.contype: c, f, p, u, x, n
    validated: bool
    definition: str
    index_name: str | None = None


@dataclass(frozen=True)
class TableFacts:
    schema: str
    name: str
    oid: int
    columns: tuple[ColumnFacts, ...]
    primary_key: tuple[str, ...]
    estimated_rows: int
    size_bytes: int
    indexes: tuple[IndexFacts, ...] = field(default=())
    constraints: tuple[ConstraintFacts, ...] = field(default=())

    def column(self, name: str) -> ColumnFacts | None:
        return next((c for c in self.columns if c.name == name), None)

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return render(self.ident)

    def batch_key(self) -> tuple[str, ...] | None:
        """A unique, NOT NULL key to walk the table in keyset order.

        The primary key if there is one, else the narrowest valid, non-partial,
        column-only unique index whose columns are all NOT NULL (such an index
        identifies rows exactly as a primary key would).
        """
        if self.primary_key:
            return self.primary_key
        candidates = [
            ix.columns
            for ix in self.indexes
            if ix.unique and ix.valid and not ix.has_expressions and ix.predicate is None
            and all((c := self.column(col)) is not None and c.not_null for col in ix.columns)
        ]
        return min(candidates, key=len) if candidates else None

    def constraint(self, name: str) -> ConstraintFacts | None:
        return next((c for c in self.constraints if c.name == name), None)

    def index(self, name: str) -> IndexFacts | None:
        return next((i for i in self.indexes if i.name == name), None)


@dataclass(frozen=True)
class ExpressionFacts:
    """A user-supplied SQL expression, already parsed as exactly one expression.

    ``volatile`` is the server's own verdict (see ``catalog.probe_default``):
    PostgreSQL only stores a default without rewriting the table when the
    default contains no volatile function.
    """

    text: str
    volatile: bool


@dataclass(frozen=True)
class ServerFacts:
    version_num: int

    @property
    def major(self) -> int:
        return self.version_num // 10000


@dataclass(frozen=True)
class ExistingRelation:
    """A relation that already carries the name we want for a new index."""

    kind: str  # pg_class.relkind
    on_table: bool  # an index on the very table we are indexing
    valid: bool  # pg_index.indisvalid (indexes only)
    # The backend building this index right now (its CREATE INDEX CONCURRENTLY in
    # pg_stat_progress_create_index, PostgreSQL >= 12):
    # an INVALID index that is someone's build in progress, not a leftover.
    building_pid: int | None = None


@dataclass(frozen=True)
class DropIndexFacts:
    schema: str
    name: str
    table: str  # quoted schema.table the index is on
    definition: str  # pg_get_indexdef
    partitioned: bool  # a partitioned index (relkind 'I')
    constraint: str | None = None  # name of the constraint the index implements
    constraint_type: str | None = None  # pg_constraint.contype


@dataclass(frozen=True)
class DataViolations:
    """What a pre-flight query found in existing rows.

    ``count`` is rows (or duplicate groups) that would make the change fail;
    ``samples`` are a few of them rendered as ``(key)=(value)`` for the message.
    """

    count: int
    samples: tuple[str, ...] = ()

    def examples(self) -> str:
        return "" if not self.samples else "; e.g. " + ", ".join(self.samples)
