"""backfill: an arbitrary ``UPDATE t SET ... [WHERE ...]`` in short keyset batches.

Problem: one ``UPDATE big_table SET ...`` is one transaction: it row-locks
every matching row until it commits (application writes to those rows wait),
bloats the table in one go, and holds back VACUUM for its whole duration.
The folk remedy, ``UPDATE ... WHERE id IN (SELECT ... LIMIT n)`` in a loop,
re-scans from the start on every iteration, cannot resume, and fights the
application over the same rows.

What we do instead: the batch engine walks the table in primary-key order
(keyset, never OFFSET) up to the largest key present at the start, each
batch its own short transaction under ``lock_timeout``, with a checkpoint
committed alongside; the WHERE predicate is re-checked on the newest row
version, so rows the application changed meanwhile are judged by their new
values.  Batch size adapts to a target duration, throttles pause it under
replication lag or load, and ``online resume`` continues after a crash.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import require_batch_key, require_columns
from pgonline.strategies._leaf_backfill import backfill_steps
from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import tables
from pgonline.catalog.facts import TableFacts
from pgonline.catalog.partitions import PartitionTree, partition_tree
from pgonline.connection import Conn
from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName
from pgonline.sql.render import render


@dataclass(frozen=True)
class BackfillArgs:
    columns: tuple[str, ...]
    values: tuple[str, ...]  # one validated SQL expression per column
    where: str | None = None


@dataclass(frozen=True)
class BackfillFacts:
    table: TableFacts
    partitions: PartitionTree | None = None  # a partitioned table: walked leaf by leaf


def parse_assignments(text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``col = expr[, col2 = expr2]`` -> (columns, expressions rendered from their parse)."""
    pairs = expressions.assignments(text, "--set")
    return tuple(c for c, _ in pairs), tuple(v for _, v in pairs)


def parse(table: str, *, set_: str, where: str | None = None) -> Change[BackfillArgs]:
    qname = QualifiedName.parse(table)
    columns, values = parse_assignments(set_)
    return Change(qname, BackfillArgs(
        columns=columns, values=values,
        where=None if where is None else expressions.expression(where, "--where")))


async def leaf_tree(conn: Conn, table: TableFacts) -> PartitionTree | None:
    """The partition tree of a partitioned ``table`` (its backfill walks the leaves), else None."""
    if not await index_catalog.is_partitioned(conn, table.oid):
        return None
    return await partition_tree(conn, table.oid)


async def gather(conn: Conn, table: TableFacts, args: BackfillArgs) -> BackfillFacts:
    require_columns(table, args.columns)
    await column_catalog.refuse_generated_targets(conn, table, args.columns, "backfill")
    for col, value in zip(args.columns, args.values, strict=True):
        facts_col = table.column(col)
        assert facts_col is not None
        # The server plans (never runs) the value cast to the column's type.
        await tables.check_row_expression(conn, table, value, facts_col.type)
    if args.where is not None:
        await tables.check_predicate(conn, table, args.where)
    return BackfillFacts(table=table, partitions=await leaf_tree(conn, table))


COMMAND = Command(
    parse=parse, gather=gather,
    backfills=True,
    help="UPDATE TABLE SET ... [WHERE ...] in short, resumable keyset batches.",
    params=(
        Arg("table"),
        Opt("--set", "set_", required=True, metavar="'COL = EXPR[, ...]'",
            help="Assignments, as in UPDATE ... SET."),
        Opt("--where", "where", metavar="PRED", help="Only rows matching this predicate."),
    ),
    replaces="`UPDATE ... LIMIT` loops, one-transaction `DO` blocks",
    does="keyset batches, each its own short transaction",
    doc="backfill",
)


@strategy("backfill", command=COMMAND)
def plan_backfill(facts: BackfillFacts, args: BackfillArgs) -> Plan:
    t = facts.table
    require_columns(t, args.columns)
    key = require_batch_key(t)
    moved = [c for c in args.columns if c in key]
    if moved:
        raise CatalogError(
            f"cannot backfill the batch key column(s) {', '.join(moved)} of {t.display}",
            hint="the batches walk the table in key order; changing the key under the walk "
            "would skip or revisit rows",
        )
    set_sql = sql.SQL(", ").join(
        sql.SQL("{} = ({})").format(sql.Identifier(c), sql.SQL(v))
        for c, v in zip(args.columns, args.values, strict=True)
    )
    steps = backfill_steps(
        t, facts.partitions, key=key, set_sql=render(set_sql), where_sql=args.where,
        description="update matching rows in short keyset batches",
        why_safe="each batch is its own short transaction holding row locks on at most one "
        "batch of rows; the WHERE is re-checked on the newest row version",
        # The old values are not kept anywhere, so no SQL could restore them.
        irreversible="the rows already updated keep their new values (the old ones were not "
        "kept); write a compensating `online backfill` if they must change back",
    )
    notes = ["rows inserted after the backfill starts, beyond the largest key at that moment, "
             "are not visited: the application must write the new values itself"]
    if args.where is None:
        notes.append("no --where: every row is updated once (re-running updates them again)")
    if facts.partitions is not None:
        notes.append(f"{t.display} is partitioned: each of its {len(facts.partitions.leaves)} "
                     "leaf partitions is walked on its own (one step and checkpoint each); a row "
                     "the application moves to another partition meanwhile may be missed")
    return Plan("backfill", t.display, asdict(args), tuple(steps), notes=tuple(notes))
