"""add-foreign-key: add a FOREIGN KEY without blocking writes for a full scan.

Problem: ``ALTER TABLE t ADD FOREIGN KEY (c) REFERENCES r (k)`` checks every
existing row of ``t`` against ``r`` while holding SHARE ROW EXCLUSIVE on both
tables: all writes to *both* tables wait for the whole scan.

What we do instead, in two transactions:

1. ``ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID``: SHARE ROW EXCLUSIVE on
   both tables, but only for the catalog update (no scan); from then on new
   and updated rows are checked, and deletes on ``r`` honour the action.
2. ``VALIDATE CONSTRAINT``: scans ``t`` under SHARE UPDATE EXCLUSIVE on ``t``
   and ROW SHARE on ``r``; neither blocks reads or writes.

Pre-flight (read-only, in :func:`gather`) counts rows of ``t`` whose key
has no match in ``r`` (MATCH SIMPLE: a row with a NULL in the key is not
checked) and refuses with sample keys, since VALIDATE would fail on them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from pgonline.strategies._ddl import (
    refuse_violations,
    require_columns,
    validate_step,
)
from pgonline.strategies._partitioned_constraints import fk_piece_name, partitioned_fk_steps
from pgonline.strategies.add_check import refuse_existing_constraint
from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight, tables
from pgonline.catalog.facts import DataViolations, TableFacts
from pgonline.catalog.partitions import PartitionTree, partition_tree
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.names import derived_name
from pgonline.sql.render import render

ON_DELETE_ACTIONS = ("no action", "restrict", "cascade", "set null", "set default")


@dataclass(frozen=True)
class AddForeignKeyArgs:
    name: str
    columns: tuple[str, ...]
    ref_table: str  # quoted [schema.]table as named; schema-qualified once completed
    ref_columns: tuple[str, ...]  # () until completed: the referenced primary key
    on_delete: str | None = None


@dataclass(frozen=True)
class AddForeignKeyFacts:
    table: TableFacts
    referenced: TableFacts
    violations: DataViolations
    partitions: PartitionTree | None = None  # the referencing table is partitioned


def default_fk_name(table: str, columns: tuple[str, ...]) -> str:
    """``<table>_<col>_fkey`` like PostgreSQL; hashed when over 63 bytes."""
    return derived_name(table, *columns, "fkey")


def referenced_key_is_unique(ref: TableFacts, columns: tuple[str, ...]) -> bool:
    """PostgreSQL needs a valid, non-partial, column-only unique index on exactly these columns."""
    return any(
        ix.unique and ix.valid and not ix.has_expressions and ix.predicate is None
        and set(ix.columns) == set(columns) and len(ix.columns) == len(columns)
        for ix in ref.indexes
    )


def _has_leading_index(t: TableFacts, columns: tuple[str, ...]) -> bool:
    n = len(columns)
    return any(ix.valid and ix.predicate is None and set(ix.columns[:n]) == set(columns)
               for ix in t.indexes)


def check_shape(t: TableFacts, ref: TableFacts, args: AddForeignKeyArgs) -> None:
    """Catalog-only checks, also run by :func:`gather` before its pre-flight scan."""
    require_columns(t, args.columns)
    require_columns(ref, args.ref_columns)
    if len(args.columns) != len(args.ref_columns):
        raise UsageError(f"{len(args.columns)} referencing columns but "
                         f"{len(args.ref_columns)} referenced columns")
    if not referenced_key_is_unique(ref, args.ref_columns):
        cols = ", ".join(render(sql.Identifier(c)) for c in args.ref_columns)
        raise CatalogError(
            f"{ref.display} ({cols}) has no primary key or unique constraint",
            hint=f"a foreign key must reference unique columns: first run "
            f"`online add-unique {ref.display} {' '.join(args.ref_columns)}`",
        )
    if args.on_delete is not None and args.on_delete not in ON_DELETE_ACTIONS:
        raise UsageError(f"--on-delete must be one of {', '.join(ON_DELETE_ACTIONS)}")
    refuse_existing_constraint(t, args.name)


def parse_reference(text: str) -> tuple[QualifiedName, tuple[str, ...]]:
    """``reftable`` or ``schema.reftable(col, col)`` (quotes respected) → name, columns."""
    in_quotes = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "(" and not in_quotes:
            rest = text[i + 1:].rstrip()
            if not rest.endswith(")"):
                raise UsageError(f"--references {text!r}: expected REFTABLE(COL, ...)")
            return QualifiedName.parse(text[:i].strip()), _split_columns(rest[:-1], text)
    return QualifiedName.parse(text.strip()), ()


def _split_columns(inner: str, text: str) -> tuple[str, ...]:
    parts: list[str] = []
    buf: list[str] = []
    in_quotes = False
    for ch in inner:
        if ch == '"':
            in_quotes = not in_quotes
        if ch == "," and not in_quotes:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    if not any(p.strip() for p in parts):
        raise UsageError(f"--references {text!r}: empty column list")
    return tuple(parse_identifier(p.strip()) for p in parts)


def parse(table: str, columns: tuple[str, ...], *, references: str, name: str | None = None,
          on_delete: str | None = None) -> Change[AddForeignKeyArgs]:
    qname = QualifiedName.parse(table)
    cols = tuple(parse_identifier(c) for c in columns)
    ref_name, ref_cols = parse_reference(references)
    return fk_change(qname, cols, ref_name, ref_cols,
                     name=None if name is None else parse_identifier(name),
                     on_delete=None if on_delete is None else " ".join(on_delete.lower().split()))


def fk_change(table: QualifiedName, columns: tuple[str, ...], ref_table: QualifiedName,
              ref_columns: tuple[str, ...], *, name: str | None,
              on_delete: str | None) -> Change[AddForeignKeyArgs]:
    """The change from validated values (the command line's, or an ADD FOREIGN KEY's)."""
    if not columns:
        raise UsageError("give at least one referencing column")
    if on_delete is not None and on_delete not in ON_DELETE_ACTIONS:
        raise UsageError(f"--on-delete must be one of: {', '.join(ON_DELETE_ACTIONS)}")
    return Change(table, AddForeignKeyArgs(
        # The table's name as named is the resolved relation's (quoted names are exact).
        name=default_fk_name(table.name, columns) if name is None else name,
        columns=columns, ref_table=ref_table.quoted(), ref_columns=ref_columns,
        on_delete=on_delete,
    ))


async def complete(conn: Conn, args: AddForeignKeyArgs) -> AddForeignKeyArgs:
    """The referenced table schema-qualified, and its primary key when no columns were named."""
    ref_name = QualifiedName.parse(args.ref_table)
    _, ref_schema, ref_rel = await tables.resolve_table(conn, ref_name)
    ref_target = QualifiedName(ref_schema, ref_rel)
    ref_cols = args.ref_columns
    if not ref_cols:
        ref_facts = await tables.table_facts(conn, ref_target)
        if not ref_facts.primary_key:
            raise CatalogError(f"{ref_facts.display} has no primary key",
                               hint="name the referenced columns: --references REFTABLE(COL, ...)")
        ref_cols = ref_facts.primary_key
    return replace(args, ref_table=ref_target.quoted(), ref_columns=ref_cols)


async def gather(conn: Conn, table: TableFacts, args: AddForeignKeyArgs) -> AddForeignKeyFacts:
    ref = await tables.table_facts(conn, QualifiedName.parse(args.ref_table))
    check_shape(table, ref, args)
    # Pre-flight, read-only: rows VALIDATE would reject.
    found = await preflight.orphans(conn, table, args.columns, ref, args.ref_columns)
    tree = (await partition_tree(conn, table.oid)
            if await index_catalog.is_partitioned(conn, table.oid) else None)
    return AddForeignKeyFacts(table=table, referenced=ref, violations=found, partitions=tree)


COMMAND = Command(
    parse=parse, gather=gather, complete=complete,
    postponable=True,
    help="Add a FOREIGN KEY on TABLE (COLUMNS...): NOT VALID, then VALIDATE.",
    params=(
        Arg("table"), Arg("columns", many=True),
        Opt("--references", "references", required=True, metavar="REFTABLE[(COLS)]",
            help="Referenced table, optionally with columns (default: its primary key)."),
        Opt("--name", "name", help="Constraint name (default: <table>_<columns>_fkey)."),
        Opt("--on-delete", "on_delete", choices=ON_DELETE_ACTIONS,
            help="Referential action on delete of the referenced row."),
    ),
    replaces="`ADD FOREIGN KEY`",
    does="reports orphans; NOT VALID, then VALIDATE",
)


@strategy("add-foreign-key", command=COMMAND)
def plan_add_foreign_key(facts: AddForeignKeyFacts, args: AddForeignKeyArgs) -> Plan:
    t, ref = facts.table, facts.referenced
    check_shape(t, ref, args)
    refuse_violations(
        facts.violations,
        f"rows of {t.display} reference a missing row of {ref.display}",
        hint="insert the missing referenced rows, or fix/NULL the keys, then re-run",
    )
    name = sql.Identifier(args.name)
    fk = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} FOREIGN KEY ({}) REFERENCES {} ({})").format(
        t.ident, name, sql.SQL(", ").join(map(sql.Identifier, args.columns)),
        ref.ident, sql.SQL(", ").join(map(sql.Identifier, args.ref_columns)),
    )
    if args.on_delete is not None:
        # A fixed keyword from ON_DELETE_ACTIONS, never user text.
        fk = sql.SQL("{} ON DELETE {}").format(fk, sql.SQL(args.on_delete.upper()))
    if facts.partitions is not None:
        return _plan_partitioned(facts, args)
    fk = sql.SQL("{} NOT VALID").format(fk)
    notes = [
        f"add-constraint locks {t.display} and {ref.display} in SHARE ROW EXCLUSIVE mode "
        "(blocks writes) for a catalog update only",
        f"validate locks {t.display} in SHARE UPDATE EXCLUSIVE mode and {ref.display} in "
        "ROW SHARE mode: neither blocks reads or writes",
    ]
    if not _has_leading_index(t, args.columns):
        notes.append(
            f"no index on {t.display} ({', '.join(args.columns)}): every delete or key update "
            f"on {ref.display} will scan {t.display}; consider `online add-index "
            f"{t.display} {' '.join(args.columns)}`"
        )
    steps = (
        Step(
            id="add-constraint", phase=Phase.EXPAND, lock=LockLevel.SHARE_ROW_EXCLUSIVE,
            description=f"add FOREIGN KEY {render(name)} NOT VALID (SHARE ROW EXCLUSIVE on "
            f"{t.display} and {ref.display})",
            sql=render(fk),
            undo_sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                t.ident, name)),
            why_safe="NOT VALID skips the scan of existing rows; both locks are held for a "
            "catalog update only",
        ),
        validate_step(t, args.name, why_safe=(
            f"VALIDATE takes SHARE UPDATE EXCLUSIVE on {t.display} and ROW SHARE on "
            f"{ref.display}: reads and writes on both continue during the scan")),
    )
    return Plan("add-foreign-key", t.display, asdict(args), steps, notes=tuple(notes))


def _plan_partitioned(facts: AddForeignKeyFacts, args: AddForeignKeyArgs) -> Plan:
    """Per leaf NOT VALID + VALIDATE, then the parent adopts them (_partitioned_constraints)."""
    t, ref, tree = facts.table, facts.referenced, facts.partitions
    assert tree is not None
    for p in tree.leaves:
        piece = fk_piece_name(args.name, p)
        if piece == args.name:
            raise CatalogError(f"constraint name {args.name!r} collides with a partition's")
    clause = sql.SQL("FOREIGN KEY ({}) REFERENCES {} ({})").format(
        sql.SQL(", ").join(map(sql.Identifier, args.columns)), ref.ident,
        sql.SQL(", ").join(map(sql.Identifier, args.ref_columns)))
    if args.on_delete is not None:
        # A fixed keyword from ON_DELETE_ACTIONS, never user text.
        clause = sql.SQL("{} ON DELETE {}").format(clause, sql.SQL(args.on_delete.upper()))
    steps = partitioned_fk_steps(t, tree, args.name, clause, ref, args.columns)
    notes = [
        f"{t.display} is partitioned (PostgreSQL < 18 refuses NOT VALID foreign keys on it): "
        f"each of its {len(tree.leaves)} leaf partitions gets its own NOT VALID foreign key, "
        "validated there; the parent's ADD FOREIGN KEY then adopts them without a scan",
        "rollback drops the parent's constraint, which takes the adopted ones with it",
    ]
    if not _has_leading_index(t, args.columns):
        notes.append(
            f"no index on {t.display} ({', '.join(args.columns)}): every delete or key update "
            f"on {ref.display} will scan {t.display}; consider `online add-index "
            f"{t.display} {' '.join(args.columns)}`"
        )
    return Plan("add-foreign-key", t.display, asdict(args), tuple(steps), notes=tuple(notes))
