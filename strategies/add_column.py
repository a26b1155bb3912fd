"""add-column: add a column, with a default and/or NOT NULL, without a long lock.

Problem: ``ALTER TABLE t ADD COLUMN c type NOT NULL DEFAULT volatile()`` (or
any default before PostgreSQL 11) rewrites the whole table under ACCESS
EXCLUSIVE: every read and write waits for the rewrite.

What we do instead:

* PostgreSQL ≥ 11 and a non-volatile default (the server's own verdict): one
  ``ALTER`` that only updates the catalog ("fast default"); NOT NULL is
  checked against the stored default, so no scan either.
* Otherwise: add the column without a default (catalog only) and set the
  default for new rows in the same statement → backfill existing rows in
  batches → (``--not-null``) count the NULLs left, NOT NULL ``NOT VALID`` →
  ``VALIDATE`` (scans under SHARE UPDATE EXCLUSIVE, which does not block
  reads or writes; before PostgreSQL 18 through a helper CHECK, see
  ``_ddl.not_null_steps``).

With ``--backfill EXPR`` the application keeps writing rows, with code that
does not know the column, while the backfill runs: the same transaction as
``ADD COLUMN`` installs a trigger that sets the column to EXPR (computed over
``NEW``) whenever a write leaves it NULL (``_fill_trigger``), so there is no
instant in which such a write can store a NULL; the trigger is dropped after
NOT NULL is validated.  A volatile ``--default`` alone needs no trigger: the
default is set in the very ``ALTER`` that adds the column, so every insert
that omits the column gets it, and code that does not know the column never
writes NULL into it (an explicit NULL is caught by the NULL count before any
constraint exists).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import PAGE_WALK_NOTE, not_null_steps, vacuum_step, walk_key
from pgonline.strategies._fill_trigger import drop_step, fill_trigger, writers_must_set
from pgonline.strategies._leaf_backfill import backfill_steps
from pgonline.strategies.backfill_set import leaf_tree
from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables
from pgonline.catalog.facts import ExpressionFacts, ServerFacts, TableFacts
from pgonline.catalog.partitions import PartitionTree
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render


@dataclass(frozen=True)
class AddColumnArgs:
    column: str
    type_sql: str
    default: str | None = None
    not_null: bool = False
    backfill: str | None = None


@dataclass(frozen=True)
class AddColumnFacts:
    server: ServerFacts
    table: TableFacts
    default: ExpressionFacts | None
    has_rows: bool
    partitions: PartitionTree | None = None  # a partitioned table: backfilled leaf by leaf


def parse(table: str, column: str, type_: str, *, default: str | None = None,
          not_null: bool = False, backfill: str | None = None) -> Change[AddColumnArgs]:
    # Names become identifiers, the type and expressions must parse as exactly one item.
    return Change(QualifiedName.parse(table), AddColumnArgs(
        column=parse_identifier(column),
        type_sql=expressions.type_name(type_),
        default=None if default is None else expressions.expression(default, "default"),
        not_null=not_null,
        backfill=None if backfill is None else expressions.expression(backfill,
                                                                      "backfill expression"),
    ))


async def gather(conn: Conn, table: TableFacts, args: AddColumnArgs) -> AddColumnFacts:
    probed = await tables.probe_default(conn, args.type_sql, args.default)
    if args.backfill is not None:
        # The fill trigger computes it one row at a time: refuse aggregates,
        # window and set-returning functions before anything changes.
        await column_catalog.check_per_row_expression(conn, table, args.backfill, args.column,
                                                      args.type_sql)
    return AddColumnFacts(server=await tables.server_facts(conn), table=table, default=probed,
                          has_rows=await tables.has_rows(conn, table),
                          partitions=await leaf_tree(conn, table))


COMMAND = Command(
    parse=parse, gather=gather,
    backfills=True, postponable=True,
    help="Add COLUMN of TYPE to TABLE without a long lock.",
    params=(
        Arg("table"), Arg("column"), Arg("type_", metavar="TYPE"),
        Opt("--default", "default", metavar="EXPR", help="Default for existing and new rows."),
        Opt("--not-null", "not_null", is_flag=True, help="Make the column NOT NULL."),
        Opt("--backfill", "backfill", metavar="EXPR",
            help="Compute existing rows' value from this expression (may use other columns)."),
    ),
    replaces="`ADD COLUMN ... NOT NULL DEFAULT volatile()`",
    does="fast catalog-only path, or add → batched backfill → validated NOT NULL",
)


@strategy("add-column", command=COMMAND)
def plan_add_column(facts: AddColumnFacts, args: AddColumnArgs) -> Plan:
    t = facts.table
    if t.column(args.column) is not None:
        raise CatalogError(f"column {render(sql.Identifier(args.column))} already exists "
                           f"in {t.display}")
    table = t.ident
    col = sql.Identifier(args.column)
    typ = sql.SQL(args.type_sql)
    plan_args = asdict(args)
    fast_default = facts.server.major >= 11 and (facts.default is None or not facts.default.volatile)
    undo = render(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(table, col))

    if args.backfill is None and (fast_default or not facts.has_rows):
        if args.not_null and args.default is None and facts.has_rows:
            raise UsageError(
                f"{t.display} has rows, so a NOT NULL column needs --default or --backfill"
            )
        parts: list[sql.Composable] = [sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(table, col, typ)]
        if args.default is not None:
            parts.append(sql.SQL(" DEFAULT ({})").format(sql.SQL(args.default)))
        if args.not_null:
            parts.append(sql.SQL(" NOT NULL"))
        why = ("the table is empty, so nothing is rewritten or scanned" if not facts.has_rows else
               "PostgreSQL >= 11 stores a non-volatile default in the catalog: no rewrite, no scan")
        step = Step(
            id="add-column", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="add the column (catalog-only change)",
            sql=render(sql.Composed(parts)), undo_sql=undo, why_safe=why,
        )
        return Plan("add-column", t.display, plan_args, (step,),
                    notes=("fast path: one metadata-only ALTER under lock_timeout",))

    fill = args.backfill if args.backfill is not None else args.default
    if fill is None:
        raise UsageError("nothing to backfill: give --default or --backfill")  # pragma: no cover
    key = walk_key(t, major=facts.server.major)
    add = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(table, col, typ)
    if args.default is not None:
        add = sql.SQL("{}, ALTER COLUMN {} SET DEFAULT ({})").format(add, col, sql.SQL(args.default))
    add_sql, description = render(add), "add the column without a default; set the default for new rows only"
    why = ("a column added without a default is a catalog-only change; SET DEFAULT "
           "affects future inserts only, so existing rows are not rewritten")
    trigger = None if args.backfill is None else fill_trigger(t, args.column, args.backfill)
    if trigger is not None:
        # One transaction: no write can land between ADD COLUMN and the trigger,
        # and a rollback drops the trigger before the column its function reads.
        add_sql = f"{add_sql};\n{trigger.create_sql}"
        undo = f"{trigger.drop_sql};\n{undo}"
        description += "; in the same transaction, the trigger filling rows the application writes"
        why += ("; CREATE TRIGGER in the same transaction needs no other lock, and from its "
                "commit every write that leaves the column NULL gets the backfill value")
    steps = [
        Step(
            id="add-column", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description=description, sql=add_sql, undo_sql=undo, why_safe=why,
        ),
        *backfill_steps(
            t, facts.partitions, key=key,
            set_sql=render(sql.SQL("{} = ({})").format(col, sql.SQL(fill))),
            where_sql=render(sql.SQL("{} IS NULL").format(col)),
            description="fill existing rows in short keyset batches",
            why_safe="each batch is its own short transaction; rows the application wrote "
            "meanwhile are skipped (re-checked under the row lock)",
        ),
        vacuum_step(t),
    ]
    notes = ["staged path: " + ("the default is volatile, so PostgreSQL would rewrite the table"
                                if facts.default is not None and facts.default.volatile
                                else "existing rows need a computed value")]
    if not key:
        notes.append(PAGE_WALK_NOTE)
    if trigger is not None:
        got = ("the default if they omit the column, else the backfill value when they leave it NULL"
               if args.default is not None else "the backfill value when they leave it NULL")
        notes.append(f"rows the application writes during the change get {got} "
                     f"(trigger {trigger.name}, computed from the row as written)")
    if args.not_null:
        steps += not_null_steps(t, args.column, major=facts.server.major,
                                partitions=facts.partitions)
        if facts.server.major < 12:
            notes.append("PostgreSQL < 12 scans the table for SET NOT NULL under ACCESS EXCLUSIVE")
    if trigger is not None:
        unaware_inserts_fail = args.not_null and args.default is None
        steps.append(drop_step(
            trigger, keeps="NOT NULL now rejects a NULL" if args.not_null else "the backfill is complete",
            gate=writers_must_set(args.column) if unaware_inserts_fail else None))
        if unaware_inserts_fail:
            notes.append(
                "NOT NULL with no default: an INSERT that omits the column can only succeed while "
                "the fill trigger exists, so a run of all phases stops before dropping it; deploy "
                "code that writes the column, then run --phase contract (or give --default)")
        elif args.default is None:
            notes.append("once the contract phase has dropped the trigger, an INSERT that omits "
                         "the column leaves it NULL")
    return Plan("add-column", t.display, plan_args, tuple(steps), notes=tuple(notes))
