"""add-unique: add a UNIQUE constraint without blocking writes during the index build.

Problem: ``ALTER TABLE t ADD CONSTRAINT c UNIQUE (cols)`` builds the unique
index while holding ACCESS EXCLUSIVE: no reads, no writes for the whole build.

What we do instead:

1. ``CREATE UNIQUE INDEX CONCURRENTLY`` under the constraint's name (SHARE
   UPDATE EXCLUSIVE: reads and writes continue), outside a transaction and
   restartable (an INVALID leftover of a failed build is dropped and rebuilt);
2. ``ALTER TABLE t ADD CONSTRAINT c UNIQUE USING INDEX c``: ACCESS EXCLUSIVE
   for a catalog update only, since the index already proves uniqueness.

Pre-flight (read-only, in :func:`gather`) runs the "find duplicates" query
for the user (``GROUP BY cols HAVING count(*) > 1``) and refuses with the
number of duplicate groups and a few examples.  Uniqueness over a subset of
rows is not a constraint in PostgreSQL: it is a unique *partial index*
(``online add-index --unique --where``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import (
    build_index_step,
    constraint_exists_query,
    refuse_build_in_progress,
    refuse_violations,
    require_columns,
)
from pgonline.strategies._partitioned_index import (
    partitioned_key_steps,
    piece_name,
    refuse_foreign_partitions,
    refuse_unique_without_partition_key,
)
from pgonline.strategies.add_check import refuse_existing_constraint
from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight
from pgonline.catalog.facts import DataViolations, ExistingRelation, TableFacts
from pgonline.catalog.partitions import PartitionTree, partition_tree
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.names import derived_name
from pgonline.sql.render import render


@dataclass(frozen=True)
class AddUniqueArgs:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class AddUniqueFacts:
    table: TableFacts
    existing: ExistingRelation | None
    duplicates: DataViolations
    # A partitioned table: its partitions, and what already carries each leaf's piece name.
    partitions: PartitionTree | None = None
    pieces: tuple[ExistingRelation | None, ...] = ()


def default_unique_name(table: str, columns: tuple[str, ...]) -> str:
    """``<table>_<col>_key`` like PostgreSQL; hashed when over 63 bytes."""
    return derived_name(table, *columns, "key")


def plan_unique_constraint(kind: str, facts: AddUniqueFacts, args: AddUniqueArgs, *,
                           primary: bool) -> Plan:
    """The two steps shared by add-unique and add-primary-key."""
    t = facts.table
    require_columns(t, args.columns)
    refuse_existing_constraint(t, args.name)
    ident = render(sql.Identifier(t.schema, args.name))
    if facts.partitions is not None:
        return _plan_partitioned(kind, facts, args, ident, primary=primary)
    notes: list[str] = []
    ex = facts.existing
    refuse_build_in_progress(ex, ident)
    if ex is not None:
        ix = t.index(args.name)
        if ex.kind == "i" and ex.on_table and not ex.valid:
            notes.append(f"an INVALID index {ident} (left by a failed build) is dropped "
                         "and rebuilt")
        elif (ex.kind == "i" and ex.on_table and ix is not None and ix.unique
              and ix.columns == args.columns and not ix.has_expressions
              and ix.predicate is None):
            # A valid unique index on exactly these columns: the build step's
            # done_if sees it and the constraint simply adopts it.
            notes.append(f"the existing unique index {ident} is adopted as the constraint")
        else:
            raise CatalogError(f"relation {ident} already exists",
                               hint="choose another constraint name with --name")
    what = "PRIMARY KEY" if primary else "UNIQUE"
    cols = ", ".join(render(sql.Identifier(c)) for c in args.columns)
    refuse_violations(
        facts.duplicates, f"duplicate value groups in {t.display} ({cols})",
        hint="a unique index cannot be built over duplicates: resolve them first "
        "(the examples show the duplicated values and how often each occurs)",
    )
    name = sql.Identifier(args.name)
    steps = (
        build_index_step(
            step_id="create-index", table=t, index=args.name, unique=True,
            keys=[sql.Identifier(c) for c in args.columns],
            description=f"build unique index {ident} CONCURRENTLY (outside a transaction)",
        ),
        Step(
            id="add-constraint", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description=f"attach the index as {what} constraint {render(name)}",
            sql=render(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                t.ident, name, sql.SQL(what), name)),
            done_if=constraint_exists_query(t, args.name),
            # Dropping the constraint drops its index too (ACCESS EXCLUSIVE, catalog only).
            undo_sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                t.ident, name)),
            why_safe="the valid unique index already proves uniqueness"
            + (" and the columns are NOT NULL" if primary else "")
            + ", so this is a catalog update only; no scan, no index build",
        ),
    )
    return Plan(kind, t.display, asdict(args), steps, notes=tuple(notes))


def _plan_partitioned(kind: str, facts: AddUniqueFacts, args: AddUniqueArgs, ident: str, *,
                      primary: bool) -> Plan:
    """The constraint on a partitioned table (strategies/_partitioned_index.py)."""
    t, tree = facts.table, facts.partitions
    assert tree is not None
    what = "PRIMARY KEY" if primary else "UNIQUE"
    refuse_foreign_partitions(t.display, tree)
    refuse_unique_without_partition_key(t, tree, args.columns, f"{what} constraint")
    if facts.existing is not None:
        raise CatalogError(f"relation {ident} already exists",
                           hint="choose another constraint name with --name")
    for p, piece in zip(tree.partitions, facts.pieces, strict=True):
        name = render(sql.Identifier(p.schema, piece_name(args.name, p)))
        refuse_build_in_progress(piece, name)
        if piece is not None and not (p.is_leaf and piece.kind == "i" and piece.on_table):
            raise CatalogError(f"relation {name} already exists (the name of the index of "
                               f"partition {p.display})", hint="choose another name with --name")
    cols = ", ".join(render(sql.Identifier(c)) for c in args.columns)
    refuse_violations(
        facts.duplicates, f"duplicate value groups in {t.display} ({cols})",
        hint="a unique index cannot be built over duplicates: resolve them first "
        "(the examples show the duplicated values and how often each occurs)",
    )
    steps = partitioned_key_steps(t.schema, t.name, tree, args.name, args.columns,
                                  primary=primary)
    notes = (f"{t.display} is partitioned (PostgreSQL has no ADD CONSTRAINT ... USING INDEX "
             f"there): each of its {len(tree.leaves)} leaf partitions gets its unique index "
             f"CONCURRENTLY and its own {what} constraint, which the parent's constraint then "
             "adopts without building",
             "rollback drops the parent's constraint, and every partition's with it (a catalog "
             "update under ACCESS EXCLUSIVE on the table and its partitions)")
    return Plan(kind, t.display, asdict(args), tuple(steps), notes=notes)


def parse_key(table: str, columns: tuple[str, ...], name: str | None,
              default_name: Callable[[str, tuple[str, ...]], str]) -> Change[AddUniqueArgs]:
    """The arguments of add-unique and add-primary-key (``default_name(table, columns)``)."""
    return key_change(QualifiedName.parse(table), tuple(parse_identifier(c) for c in columns),
                      None if name is None else parse_identifier(name), default_name)


def key_change(table: QualifiedName, columns: tuple[str, ...], name: str | None,
               default_name: Callable[[str, tuple[str, ...]], str]) -> Change[AddUniqueArgs]:
    """The change from validated values (the command line's, or an ADD CONSTRAINT's)."""
    if not columns:
        raise UsageError("give at least one column")
    return Change(table, AddUniqueArgs(
        # The table's name as named is the resolved relation's (quoted names are exact).
        name=default_name(table.name, columns) if name is None else name, columns=columns))


def parse(table: str, columns: tuple[str, ...], *, name: str | None = None,
          where: str | None = None) -> Change[AddUniqueArgs]:
    if where is not None:
        raise UsageError(
            "a UNIQUE constraint cannot have a WHERE clause",
            hint="uniqueness over some rows is a unique partial index: "
            f"`online add-index {table} {' '.join(columns)} --unique --where {where!r}`",
        )
    return parse_key(table, columns, name, default_unique_name)


async def gather(conn: Conn, table: TableFacts, args: AddUniqueArgs) -> AddUniqueFacts:
    require_columns(table, args.columns)
    # Pre-flight, read-only: the duplicate groups the build would trip over.
    dups = await preflight.duplicates(conn, table, [sql.Identifier(c) for c in args.columns],
                                      args.columns)
    tree = (await partition_tree(conn, table.oid)
            if await index_catalog.is_partitioned(conn, table.oid) else None)
    pieces = () if tree is None else tuple([
        await index_catalog.existing_relation(conn, p.schema, piece_name(args.name, p), p.oid)
        for p in tree.partitions])
    return AddUniqueFacts(
        table=table, duplicates=dups,
        existing=await index_catalog.existing_relation(conn, table.schema, args.name, table.oid),
        partitions=tree, pieces=pieces,
    )


COMMAND = Command(
    parse=parse, gather=gather,
    builds_index=True,
    help="Add a UNIQUE constraint on TABLE (COLUMNS...) via a concurrently built index.",
    params=(
        Arg("table"), Arg("columns", many=True),
        Opt("--name", "name", help="Constraint name (default: <table>_<columns>_key)."),
        # Accepted only to explain that a partial uniqueness is an index (add-index --unique).
        Opt("--where", "where", metavar="PRED", hidden=True),
    ),
    replaces="`ADD CONSTRAINT ... UNIQUE`",
    does="reports duplicates; unique index concurrently, then `USING INDEX`",
)


@strategy("add-unique", command=COMMAND)
def plan_add_unique(facts: AddUniqueFacts, args: AddUniqueArgs) -> Plan:
    return plan_unique_constraint("add-unique", facts, args, primary=False)
