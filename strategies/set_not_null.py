"""set-not-null: make an existing column NOT NULL without a long lock.

Problem: ``ALTER TABLE t ALTER COLUMN c SET NOT NULL`` scans the whole table
to prove there is no NULL, under ACCESS EXCLUSIVE: nothing can read or write
the table until the scan ends.

What we do instead:

1. (optional, ``--backfill EXPR``) install a trigger that sets ``c`` to EXPR
   (over ``NEW``) whenever the application writes a row leaving it NULL (see
   ``_fill_trigger``), then fill ``c`` where it IS NULL, in short keyset
   batches; the trigger is dropped after NOT NULL is validated;

then a read-only count of the NULLs left (the application may have written
some since the pre-flight): with any, the job stops before constraining
anything, so no NOT VALID constraint is left rejecting the application's
writes; then, on PostgreSQL >= 18, which can add a NOT NULL constraint NOT VALID:

2. ``ADD CONSTRAINT <t>_<c>_not_null NOT NULL c NOT VALID``: catalog only, new
   writes are checked from now on (ACCESS EXCLUSIVE for an instant);
3. ``VALIDATE CONSTRAINT``: scans existing rows under SHARE UPDATE EXCLUSIVE,
   which does not block reads or writes; the column is NOT NULL when it commits;

and on older servers, through a helper check:

2. ``ADD CONSTRAINT ... CHECK (c IS NOT NULL) NOT VALID`` (ACCESS EXCLUSIVE for
   an instant);
3. ``VALIDATE CONSTRAINT`` (SHARE UPDATE EXCLUSIVE);
4. ``SET NOT NULL``: PostgreSQL ≥ 12 proves it from the validated check and
   skips the scan (ACCESS EXCLUSIVE for an instant);
5. drop the helper check, which NOT NULL now makes redundant (ACCESS EXCLUSIVE
   for an instant).

Pre-flight (read-only, in :func:`gather`) counts the NULLs: with NULLs and
no ``--backfill`` the change is refused before anything is modified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import (
    PAGE_WALK_NOTE,
    not_null_steps,
    require_columns,
    vacuum_step,
    walk_key,
)
from pgonline.strategies._fill_trigger import drop_step, fill_trigger, install_step, writers_must_set
from pgonline.strategies._leaf_backfill import backfill_steps
from pgonline.strategies.backfill_set import leaf_tree
from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import preflight, tables
from pgonline.catalog.facts import ServerFacts, TableFacts
from pgonline.catalog.partitions import PartitionTree
from pgonline.connection import Conn
from pgonline.engine.plan import Plan, Step
from pgonline.errors import CatalogError, PreflightError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render


@dataclass(frozen=True)
class SetNotNullArgs:
    column: str
    backfill: str | None = None


@dataclass(frozen=True)
class SetNotNullFacts:
    server: ServerFacts
    table: TableFacts
    null_rows: int
    partitions: PartitionTree | None = None  # a partitioned table: backfilled leaf by leaf


def parse(table: str, column: str, *, backfill: str | None = None) -> Change[SetNotNullArgs]:
    return Change(QualifiedName.parse(table), SetNotNullArgs(
        column=parse_identifier(column),
        backfill=None if backfill is None else expressions.expression(backfill,
                                                                      "backfill expression"),
    ))


async def gather(conn: Conn, table: TableFacts, args: SetNotNullArgs) -> SetNotNullFacts:
    require_columns(table, (args.column,))
    col = table.column(args.column)
    assert col is not None
    if args.backfill is not None:
        # The fill trigger computes it one row at a time: refuse aggregates,
        # window and set-returning functions before anything changes.
        await column_catalog.check_per_row_expression(conn, table, args.backfill, args.column)
    # Pre-flight, read-only: how many rows would VALIDATE reject?
    nulls = 0 if col.not_null else await preflight.count_nulls(conn, table, args.column)
    return SetNotNullFacts(server=await tables.server_facts(conn), table=table, null_rows=nulls,
                           partitions=await leaf_tree(conn, table))


COMMAND = Command(
    parse=parse, gather=gather,
    backfills=True, postponable=True,
    help="Make COLUMN of TABLE NOT NULL via a validated CHECK (no long lock).",
    params=(
        Arg("table"), Arg("column"),
        Opt("--backfill", "backfill", metavar="EXPR",
            help="Fill NULL rows with this expression first (in batches)."),
    ),
    replaces="`SET NOT NULL` (full scan under ACCESS EXCLUSIVE)",
    does="counts NULLs first; NOT NULL NOT VALID → VALIDATE (PG ≥ 18), or CHECK NOT VALID → "
    "VALIDATE → SET NOT NULL",
)


@strategy("set-not-null", command=COMMAND)
def plan_set_not_null(facts: SetNotNullFacts, args: SetNotNullArgs) -> Plan:
    t = facts.table
    require_columns(t, (args.column,))
    col = sql.Identifier(args.column)
    column = t.column(args.column)
    assert column is not None
    if column.not_null:
        raise CatalogError(f"column {render(col)} of {t.display} is already NOT NULL")
    if facts.null_rows > 0 and args.backfill is None:
        raise PreflightError(
            f"{facts.null_rows} rows of {t.display} have {render(col)} IS NULL",
            hint="fill them first, or pass --backfill EXPR to compute a value for them "
            "in batches before the constraint is added",
        )
    steps: list[Step] = []
    notes: list[str] = []
    trigger = None
    if args.backfill is not None:
        key = walk_key(t, major=facts.server.major)
        # The trigger first: from its commit, a write that leaves the column NULL
        # gets the backfill value, so no row turns NULL behind the backfill's walk.
        trigger = fill_trigger(t, args.column, args.backfill)
        steps.append(install_step(trigger))
        steps += backfill_steps(
            t, facts.partitions, key=key,
            set_sql=render(sql.SQL("{} = ({})").format(col, sql.SQL(args.backfill))),
            where_sql=render(sql.SQL("{} IS NULL").format(col)),
            description=f"fill the {facts.null_rows} NULL rows in short keyset batches",
            why_safe="each batch is its own short transaction; a row the application filled "
            "meanwhile no longer matches IS NULL and is left alone",
        )
        steps.append(vacuum_step(t))
        if not key:
            notes.append(PAGE_WALK_NOTE)
        notes.append(f"rows the application writes with {render(col)} NULL during the change "
                     f"get the backfill value (trigger {trigger.name}, computed from the row "
                     "as written); once NOT NULL is validated the trigger is dropped and a "
                     "NULL write fails")
    else:
        notes.append("the NULLs are counted again right before the NOT VALID constraint: if "
                     "the application wrote new ones, the job stops there with nothing "
                     "constrained")
    steps += not_null_steps(t, args.column, major=facts.server.major,
                            partitions=facts.partitions)
    if trigger is not None:
        # Without a default, the code that wrote the NULLs keeps working only
        # while the trigger fills them, so the trigger drop waits for the operator.
        current = t.column(args.column)
        unaware_inserts_fail = current is not None and current.default is None
        steps.append(drop_step(trigger, keeps="NOT NULL now rejects a NULL",
                               gate=writers_must_set(args.column) if unaware_inserts_fail else None))
        if unaware_inserts_fail:
            notes.append("the column has no default: a run of all phases stops before dropping the "
                         "fill trigger; deploy code that never leaves it NULL, then run "
                         "--phase contract")
    if facts.server.major < 12:
        notes.append("PostgreSQL < 12 scans the table for SET NOT NULL under ACCESS EXCLUSIVE")
    return Plan("set-not-null", t.display, asdict(args), tuple(steps), notes=tuple(notes))
