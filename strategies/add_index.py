"""add-index: build an index without blocking writes.

Problem: a plain ``CREATE INDEX`` takes a SHARE lock on the table for the
whole build: reads continue, but every INSERT, UPDATE and DELETE waits until
the index is built, which on a big table is minutes.

What we do instead: ``CREATE [UNIQUE] INDEX CONCURRENTLY``, which holds only
SHARE UPDATE EXCLUSIVE (it blocks other DDL and VACUUM, never reads or
writes) and builds in two table scans while waiting for older transactions.
It cannot run inside a transaction, and when it fails or is interrupted it
leaves an INVALID index behind, which the planner ignores but writes still
maintain.  The step therefore carries a ``done_if`` probe (a valid index of
that name exists: nothing to do) and a cleanup (an INVALID one exists: drop
it concurrently, then build again), so a re-run always converges.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pgonline.strategies._ddl import (
    build_index_step,
    index_definition,
    refuse_build_in_progress,
    refuse_violations,
    require_columns,
)
from pgonline.strategies._partitioned_index import (
    create_statements,
    partitioned_index_steps,
    piece_name,
    refuse_foreign_partitions,
    refuse_unique_without_partition_key,
)
from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight, tables
from pgonline.catalog.facts import DataViolations, ExistingRelation, TableFacts
from pgonline.catalog.partitions import PartitionTree, partition_tree
from pgonline.connection import Conn
from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql.expressions import expression as parse_expression
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.names import derived_name
from pgonline.sql.render import render


@dataclass(frozen=True)
class AddIndexArgs:
    name: str
    columns: tuple[str, ...] = ()
    expressions: tuple[str, ...] = ()
    unique: bool = False
    where: str | None = None
    using: str | None = None


@dataclass(frozen=True)
class AddIndexFacts:
    table: TableFacts
    partitioned: bool
    existing: ExistingRelation | None
    duplicates: DataViolations | None = None  # pre-flight for --unique
    # A partitioned table: its partitions, and what already carries each one's piece name.
    partitions: PartitionTree | None = None
    pieces: tuple[ExistingRelation | None, ...] = ()


def _figure_colname(expr: str) -> str:
    """The name PostgreSQL gives an index expression column (FigureIndexColname)."""
    try:
        stmt: Any = parse_sql(f"SELECT ({expr})")[0].stmt
    except ParseError:  # validated earlier; fall back to PostgreSQL's generic name
        return "expr"
    val: Any = stmt.targetList[0].val
    if isinstance(val, ast.FuncCall) and val.funcname:
        return str(val.funcname[-1].sval)
    if isinstance(val, ast.ColumnRef) and val.fields and isinstance(val.fields[-1], ast.String):
        return str(val.fields[-1].sval)
    return "expr"


def default_index_name(table: str, columns: tuple[str, ...], expressions: tuple[str, ...]) -> str:
    """``<table>_<col>_<col>_idx`` like PostgreSQL; hashed when over 63 bytes.

    PostgreSQL truncates long names (and numbers them on conflict); a
    deterministic hashed name is what lets a re-run find its own index.
    """
    parts = [*columns, *(_figure_colname(e) for e in expressions)]
    return derived_name(table, *parts, "idx")


def parse(table: str, columns: tuple[str, ...], *, name: str | None = None,
          unique: bool = False, where: str | None = None, using: str | None = None,
          expressions: tuple[str, ...] = ()) -> Change[AddIndexArgs]:
    # Names become identifiers and SQL fragments must parse as exactly one expression.
    return index_change(
        QualifiedName.parse(table), tuple(parse_identifier(c) for c in columns),
        tuple(parse_expression(e, "index expression") for e in expressions),
        name=None if name is None else parse_identifier(name), unique=unique,
        where=None if where is None else parse_expression(where, "WHERE predicate"),
        using=None if using is None else parse_identifier(using))


def index_change(table: QualifiedName, columns: tuple[str, ...], expressions: tuple[str, ...],
                 *, name: str | None, unique: bool, where: str | None,
                 using: str | None) -> Change[AddIndexArgs]:
    """The change from validated values (the command line's, or a CREATE INDEX statement's)."""
    return Change(table, AddIndexArgs(
        # The table's name as named is the resolved relation's (quoted names are exact).
        name=default_index_name(table.name, columns, expressions) if name is None else name,
        columns=columns, expressions=expressions, unique=unique, where=where, using=using,
    ))


def index_keys(args: AddIndexArgs) -> list[sql.Composable]:
    """The index's keys as the build spells them: columns first, then ``(expression)``s."""
    keys: list[sql.Composable] = [sql.Identifier(c) for c in args.columns]
    return keys + [sql.SQL("({})").format(sql.SQL(e)) for e in args.expressions]


async def gather(conn: Conn, table: TableFacts, args: AddIndexArgs) -> AddIndexFacts:
    if args.columns:
        require_columns(table, args.columns)
    if args.using is not None:
        await index_catalog.require_access_method(conn, args.using)
    if args.where is not None:
        await tables.check_predicate(conn, table, args.where)
    keys = index_keys(args)
    if keys:
        # The server vets the whole definition (opclasses, IMMUTABLE
        # expressions) on an empty temporary copy of the table.
        await index_catalog.probe_index(conn, table, keys, unique=args.unique, using=args.using,
                                        where=args.where)
    dups = None
    if args.unique and keys:
        dups = await preflight.duplicates(conn, table, keys, [*args.columns, *args.expressions],
                                          args.where)
    partitioned = await index_catalog.is_partitioned(conn, table.oid)
    tree = await partition_tree(conn, table.oid) if partitioned else None
    pieces = () if tree is None else tuple([
        await index_catalog.existing_relation(conn, p.schema, piece_name(args.name, p), p.oid)
        for p in tree.partitions])
    return AddIndexFacts(
        table=table, partitioned=partitioned,
        existing=await index_catalog.existing_relation(conn, table.schema, args.name, table.oid),
        duplicates=dups, partitions=tree, pieces=pieces,
    )


COMMAND = Command(
    parse=parse, gather=gather,
    builds_index=True,
    help="Build an index on TABLE (COLUMNS...) with CREATE INDEX CONCURRENTLY.",
    params=(
        Arg("table"), Arg("columns", many=True, required=False),
        Opt("--name", "name", help="Index name (default: <table>_<columns>_idx)."),
        Opt("--unique", "unique", is_flag=True,
            help="A unique index (refused if duplicates exist)."),
        Opt("--where", "where", metavar="PRED", help="Partial index predicate."),
        Opt("--using", "using", metavar="METHOD", help="Access method (btree, gin, ...)."),
        Opt("--expression", "expressions", many=True, metavar="EXPR",
            help="An expression key, after the column keys (repeatable)."),
    ),
    replaces="`CREATE INDEX`",
    does="`CREATE INDEX CONCURRENTLY`, INVALID leftovers dropped and rebuilt; on a partitioned "
    "table per leaf, attached to an `ON ONLY` index",
)


@strategy("add-index", command=COMMAND)
def plan_add_index(facts: AddIndexFacts, args: AddIndexArgs) -> Plan:
    t = facts.table
    if not args.columns and not args.expressions:
        raise UsageError("give at least one column or --expression")
    if args.columns:
        require_columns(t, args.columns)
    ident = render(sql.Identifier(t.schema, args.name))
    notes: list[str] = []
    ex = facts.existing
    refuse_build_in_progress(ex, ident)
    if facts.partitioned:
        notes += _partitioned_checks(facts, args, ident)
    elif ex is not None:
        if ex.kind == "i" and ex.on_table and not ex.valid:
            notes.append(f"an INVALID index {ident} (left by a failed build) is dropped and rebuilt")
        elif ex.kind == "i" and ex.on_table:
            raise CatalogError(f"index {ident} already exists on {t.display}")
        else:
            raise CatalogError(f"relation {ident} already exists",
                               hint="choose another name with --name")
    if args.unique and facts.duplicates is not None:
        cols = ", ".join([*args.columns, *args.expressions])
        refuse_violations(
            facts.duplicates, f"duplicate value groups in {t.display} ({cols})"
            + (f" WHERE {args.where}" if args.where else ""),
            hint="a unique index cannot be built over duplicates: resolve them first "
            "(the examples show the duplicated values and how often each occurs)",
        )
    keys = index_keys(args)
    kind = "unique index" if args.unique else "index"
    if facts.partitioned:
        assert facts.partitions is not None
        definition = index_definition(unique=args.unique, keys=keys, using=args.using,
                                      where=args.where)
        steps = partitioned_index_steps(
            t.schema, t.name, facts.partitions, args.name,
            create_statements(t, facts.partitions, args.name, definition), kind=kind)
        notes.append(f"{t.display} is partitioned: the index is built CONCURRENTLY on each of "
                     f"its {len(facts.partitions.leaves)} leaf partitions and assembled with "
                     "ATTACH PARTITION; a partition created meanwhile gets its piece from "
                     "PostgreSQL")
        notes.append("rollback drops the partitioned index (PostgreSQL cannot detach its "
                     "pieces): a catalog update under ACCESS EXCLUSIVE on the table and its "
                     "partitions")
        return Plan("add-index", t.display, asdict(args), tuple(steps), notes=tuple(notes))
    step = build_index_step(
        step_id="create-index", table=t, index=args.name, unique=args.unique, keys=keys,
        using=args.using, where=args.where,
        description=f"build {kind} {ident} CONCURRENTLY (outside a transaction)",
    )
    notes.append("a transaction older than the build makes it wait; past --lock-timeout the "
                 "attempt fails, its INVALID index is dropped and the build is retried")
    return Plan("add-index", t.display, asdict(args), (step,), notes=tuple(notes))


def _partitioned_checks(facts: AddIndexFacts, args: AddIndexArgs, ident: str) -> list[str]:
    """Refusals and notes for an index on a partitioned table (see _partitioned_index)."""
    t, tree, ex = facts.table, facts.partitions, facts.existing
    assert tree is not None
    notes = []
    refuse_foreign_partitions(t.display, tree)
    if args.unique:
        refuse_unique_without_partition_key(
            t, tree, [*args.columns, *(f"({e})" for e in args.expressions)], "unique index")
    if ex is not None:
        if ex.kind == "I" and ex.on_table and not ex.valid:
            notes.append(f"the INVALID partitioned index {ident} (left by an earlier attempt) "
                         "is kept and completed")
        elif ex.kind == "I" and ex.on_table:
            raise CatalogError(f"index {ident} already exists on {t.display}")
        else:
            raise CatalogError(f"relation {ident} already exists",
                               hint="choose another name with --name")
    for p, piece in zip(tree.partitions, facts.pieces, strict=True):
        name = render(sql.Identifier(p.schema, piece_name(args.name, p)))
        refuse_build_in_progress(piece, name)
        if piece is not None and not (piece.on_table and piece.kind == ("i" if p.is_leaf else "I")):
            raise CatalogError(f"relation {name} already exists (the name of the index of "
                               f"partition {p.display})", hint="choose another name with --name")
    return notes
