"""Catalog facts about one column: its type, what depends on it, its indexes.

Plain immutable values gathered by :mod:`pgonline.catalog.columns` and handed
to the column strategies (change-type, rename-column, drop-column), which use
them to decide what they can move safely and what they must refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg import sql

from pgonline.catalog.facts import ColumnFacts
from pgonline.sql.render import render

# pg_depend.deptype 'n' (normal): the dependent object blocks a plain DROP
# COLUMN; only CASCADE removes it.  'a' (auto) objects go away with the column.
NORMAL_DEPENDENCY = "n"


@dataclass(frozen=True)
class Dependent:
    """An object that depends on the column (one pg_depend row, classified).

    ``kind`` is one of: index, primary key, unique constraint, check constraint,
    foreign key, referencing foreign key, exclusion constraint, view, rule,
    trigger, owned sequence, identity sequence, generated column, policy,
    statistics, publication, other.
    """

    kind: str
    description: str
    deptype: str

    @property
    def label(self) -> str:
        """``check constraint notes_body_check on table notes``, ``view public.v``, ..."""
        desc, last = self.description, self.kind.split()[-1]
        if desc.startswith(self.kind):
            return desc
        if desc.startswith(last + " "):
            return self.kind + desc[len(last):]
        if desc.startswith("constraint "):
            return f"{self.kind} {desc.removeprefix('constraint ')}"
        return f"{self.kind}: {desc}"

    @property
    def needs_cascade(self) -> bool:
        return self.deptype == NORMAL_DEPENDENCY


@dataclass(frozen=True)
class ColumnIndex:
    """An index whose key, INCLUDE list, expression or predicate uses the column."""

    schema: str
    name: str
    definition: str  # pg_get_indexdef: the exact statement that recreates it
    valid: bool
    constraint: str | None = None  # the PRIMARY KEY / UNIQUE / EXCLUDE constraint it backs
    constraint_type: str | None = None  # 'p', 'u' or 'x'
    deferrable: bool = False


@dataclass(frozen=True)
class OwnedSequence:
    """A sequence OWNED BY the column (serial) or its identity sequence."""

    schema: str
    name: str
    type: str  # format_type of pg_sequence.seqtypid: smallint, integer, bigint
    identity: bool


@dataclass(frozen=True)
class ReferencingKey:
    """A foreign key that references the column: the column on the other side.

    ``column`` is the referencing column paired with ours (for a multi-column
    key, the one at our column's position); ``definition`` is
    ``pg_get_constraintdef``, which recreates the key as it is (actions,
    MATCH, DEFERRABLE), and stays true after a cut-over that gives both
    columns their old names back.
    """

    constraint: str
    schema: str
    table: str
    table_oid: int
    column: str
    definition: str
    validated: bool
    relkind: str = "r"

    @property
    def table_display(self) -> str:
        return render(sql.Identifier(self.schema, self.table))

    @property
    def label(self) -> str:
        """``"public"."orders".account_id (orders_account_id_fkey)``."""
        return (f"{self.table_display}.{render(sql.Identifier(self.column))} "
                f"({render(sql.Identifier(self.constraint))})")


@dataclass(frozen=True)
class ColumnDetails:
    column: ColumnFacts
    attnum: int
    type_oid: int
    typmod: int
    identity: str = ""  # pg_attribute.attidentity: '', 'a' (ALWAYS) or 'd' (BY DEFAULT)
    generated: str = ""  # pg_attribute.attgenerated: '', 's' (stored) or 'v' (virtual)
    collation: tuple[str, str] | None = None  # (schema, name) when not the type's default
    has_equality: bool = True  # the type has an "=" operator (json does not)
    relkind: str = "r"
    in_partition_key: bool = False  # of the (partitioned) table or of a partitioned partition
    dependents: tuple[Dependent, ...] = field(default=())
    indexes: tuple[ColumnIndex, ...] = field(default=())
    sequence: OwnedSequence | None = None
    referenced_by: tuple[ReferencingKey, ...] = field(default=())

    @property
    def name(self) -> str:
        return self.column.name


@dataclass(frozen=True)
class NewTypeFacts:
    """The requested type as the server resolved it, and how it relates to the old one."""

    display: str  # format_type(oid, typmod): canonical and safely quoted
    oid: int
    typmod: int
    collatable: bool
    binary_coercible: bool  # pg_cast says old -> new is castmethod 'b' (or same type)
