"""change-type: change a column's type without rewriting the table under a lock.

Problem: ``ALTER TABLE t ALTER COLUMN c TYPE newtype`` rewrites the whole
table (and rebuilds every index on it) under ACCESS EXCLUSIVE unless the
conversion is binary-coercible: every read and write waits until it is done.
The classic case is ``integer`` → ``bigint`` on a primary key about to run
out of ids.

What we do instead:

* In place, when the server needs no rewrite (decided from catalog facts:
  same type with a wider typmod that the type's length-coercion support
  function treats as a no-op, such as ``varchar(n)`` widening or removing the
  limit, ``numeric`` precision up at the same scale, ``timestamp(p)`` up; or a
  binary-coercible cast per ``pg_cast.castmethod = 'b'`` with no new typmod,
  such as ``varchar`` → ``text``): one catalog-only ``ALTER`` under
  lock_timeout.
* Otherwise expand/contract through a shadow column (see
  :mod:`pgonline.strategies._shadow_column`): ``<col>_pgonline_new_<hash>`` of the new
  type kept equal to the converted value by a trigger, batched backfill,
  concurrent index builds (the primary key's included, re-attached with
  ``ADD CONSTRAINT ... PRIMARY KEY USING INDEX``), a milliseconds-long
  cut-over transaction, then the old column is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables
from pgonline.catalog.column_details import ColumnDetails, NewTypeFacts
from pgonline.catalog.facts import ServerFacts, TableFacts
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import Arg, Change, Command, Opt, added_later, recorded_args, strategy
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render

from ._references import ReferencingColumn, plan_with_references
from ._shadow_column import (
    ShadowPlan,
    build_steps,
    refuse_partitioned,
    refuse_unmovable,
    shadow_name,
)

# Type oids (fixed in PostgreSQL's catalog) whose typmod-coercion support
# function makes a wider typmod a no-op.
VARCHAR, VARBIT, NUMERIC = 1043, 1562, 1700
TIMESTAMP, TIMESTAMPTZ, TIME, TIMETZ = 1114, 1184, 1083, 1266
_LENGTH_TYPES = {VARCHAR, VARBIT}
_PRECISION_TYPES = {TIMESTAMP, TIMESTAMPTZ, TIME, TIMETZ}
VARHDRSZ = 4


@dataclass(frozen=True)
class ChangeTypeArgs:
    column: str
    type_sql: str
    using: str | None = None
    # Convert every column referencing this one too (int -> bigint on a key
    # that foreign keys reference).
    with_references: bool = added_later(False)


@dataclass(frozen=True)
class ChangeTypeFacts:
    server: ServerFacts
    table: TableFacts
    column: ColumnDetails
    new_type: NewTypeFacts
    # --with-references: each column referencing this one, with its table.
    references: tuple[ReferencingColumn, ...] = ()


def _numeric_parts(typmod: int) -> tuple[int, int]:
    mod = typmod - VARHDRSZ
    return (mod >> 16) & 0xFFFF, mod & 0xFFFF


def rewrite_free(old_oid: int, old_mod: int, new: NewTypeFacts) -> bool:
    """True when PostgreSQL changes the type in the catalog only (no rewrite, no scan).

    Mirrors the server: a binary-coercible cast becomes a RelabelType, and the
    support functions ``varchar_support``, ``varbit_support``,
    ``numeric_support`` and ``timestamp_support``/``time_support`` turn a
    length coercion into a no-op when it cannot shorten any value.
    """
    if old_oid == new.oid:
        if new.typmod == old_mod:
            return True
        if new.oid in _LENGTH_TYPES:
            return new.typmod == -1 or (old_mod != -1 and new.typmod >= old_mod)
        if new.oid == NUMERIC:
            if new.typmod == -1:
                return True
            if old_mod == -1:
                return False
            (old_p, old_s), (new_p, new_s) = _numeric_parts(old_mod), _numeric_parts(new.typmod)
            return new_s == old_s and new_p >= old_p
        if new.oid in _PRECISION_TYPES:
            return new.typmod == -1 or (old_mod != -1 and new.typmod >= old_mod)
        return False
    return new.binary_coercible and new.typmod == -1


def refuse_generated(t: TableFacts, col: ColumnDetails) -> None:
    """CatalogError for a generated column, or a column a generation expression reads.

    Checked before anything else (the command calls it before its type
    probes): a generated column's "default" is its generation expression,
    which no probe or shadow column can carry, and PostgreSQL itself refuses
    to retype a column that a generated column uses.
    """
    where = f"{render(sql.Identifier(col.name))} of {t.display}"
    if col.generated:
        raise CatalogError(
            f"cannot change the type of {where}: it is a generated column",
            hint="PostgreSQL recomputes it in a table rewrite under ACCESS EXCLUSIVE; drop it "
            "and add it back with the new type in a maintenance window",
        )
    users = [d.label for d in col.dependents if d.kind == "generated column"]
    if users:
        raise CatalogError(
            f"cannot change the type of {where}: used by {'; '.join(users)}",
            hint="PostgreSQL refuses to retype a column a generation expression uses; drop the "
            "generated column first, change the type, then add it back",
        )


def parse(table: str, column: str, type_: str, *, using: str | None = None,
          with_references: bool = False) -> Change[ChangeTypeArgs]:
    if using is not None and with_references:
        # The referencing columns are copied as they are: a USING expression
        # that changes the key's values would leave them pointing elsewhere.
        raise UsageError("--using cannot be combined with --with-references: the referencing "
                         "columns keep their values, so the key's values must not change")
    return Change(QualifiedName.parse(table), ChangeTypeArgs(
        column=parse_identifier(column),
        type_sql=expressions.type_name(type_),
        using=None if using is None else expressions.expression(using, "USING expression"),
        with_references=with_references,
    ))


async def gather(conn: Conn, table: TableFacts, args: ChangeTypeArgs) -> ChangeTypeFacts:
    details = await column_catalog.column_details(conn, table, args.column)
    # Before the probes: they would trip over a generation expression.
    refuse_generated(table, details)
    new_type = await column_catalog.new_type_facts(conn, details, args.type_sql)
    source = args.using if args.using is not None else render(sql.Identifier(args.column))
    await column_catalog.check_conversion(
        conn, table, args.column, source, new_type.display,
        f"cannot convert {details.column.type} to {new_type.display}"
        if args.using is None else "bad USING expression")
    await column_catalog.check_default_fits(conn, details, new_type.display)
    references: list[ReferencingColumn] = []
    if args.with_references:
        for schema, name, column in dict.fromkeys(
                (k.schema, k.table, k.column) for k in details.referenced_by):
            rtable = await tables.table_facts(conn, QualifiedName(schema, name))
            rcol = await column_catalog.column_details(conn, rtable, column)
            refuse_generated(rtable, rcol)
            await column_catalog.check_conversion(
                conn, rtable, column, render(sql.Identifier(column)), new_type.display,
                f"cannot convert {rcol.column.type} to {new_type.display}")
            await column_catalog.check_default_fits(conn, rcol, new_type.display)
            keys = tuple(k for k in details.referenced_by
                         if (k.schema, k.table, k.column) == (schema, name, column))
            references.append(ReferencingColumn(table=rtable, column=rcol, keys=keys))
    return ChangeTypeFacts(server=await tables.server_facts(conn), table=table,
                           column=details, new_type=new_type, references=tuple(references))


COMMAND = Command(
    parse=parse, gather=gather,
    backfills=True, builds_index=True, postponable=True,
    help="""Change COLUMN of TABLE to NEWTYPE: in place when no rewrite is needed, else via a
    shadow column, trigger, backfill and a milliseconds-long cut-over.""",
    params=(
        Arg("table"), Arg("column"), Arg("type_", metavar="NEWTYPE"),
        Opt("--using", "using", metavar="EXPR",
            help="Compute the new value from this expression (may use any column); "
            "default: COLUMN::NEWTYPE."),
        Opt("--with-references", "with_references", is_flag=True,
            help="Also convert every column whose foreign key references COLUMN (shadow "
            "column, trigger and backfill on each table) and swap them all in one cut-over; "
            "the foreign keys are re-created NOT VALID, then validated."),
    ),
    replaces="`ALTER COLUMN TYPE` (rewrite)",
    does="in place when binary-coercible; else shadow column + sync trigger + backfill + "
    "short swap (int→bigint on a PK included; `--with-references` converts the columns "
    "whose foreign keys reference it in the same swap)",
)


@strategy("change-type", command=COMMAND)
def plan_change_type(facts: ChangeTypeFacts, args: ChangeTypeArgs) -> Plan:
    t, col, new = facts.table, facts.column, facts.new_type
    name = sql.Identifier(col.name)
    refuse_generated(t, col)
    plan_args = recorded_args(args)
    if col.type_oid == new.oid and col.typmod == new.typmod and args.using is None:
        raise CatalogError(f"column {render(name)} of {t.display} is already of type {new.display}")

    if col.relkind == "p" and col.in_partition_key:
        # Even a catalog-only change: PostgreSQL refuses any ALTER COLUMN TYPE of
        # a partition key column.
        refuse_partitioned(t, col, "change the type of", render(name))
    if args.using is None and rewrite_free(col.type_oid, col.typmod, new):
        views = [d for d in col.dependents if d.kind in ("view", "rule")]
        if views:
            raise CatalogError(
                f"cannot change the type of {render(name)}: used by "
                + "; ".join(d.label for d in views),
                hint="PostgreSQL refuses to alter a column a view uses; drop and recreate the view",
            )
        step = Step(
            id="alter-type", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description=f"change the type to {new.display} in the catalog only",
            sql=render(sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
                t.ident, name, sql.SQL(new.display))),
            # The way back narrows the type, which PostgreSQL does by rewriting
            # the table under ACCESS EXCLUSIVE: rollback refuses and points at
            # the online way instead.
            irreversible=(
                f"the type change was catalog-only; to go back run `online change-type "
                f"{t.display} {render(name)} '{col.column.type}'`, which converts online"),
            why_safe="the conversion is binary-coercible or only widens the typmod, so "
            "PostgreSQL neither rewrites the table nor rebuilds its indexes",
        )
        return Plan("change-type", t.display, plan_args, (step,), notes=(
            f"in place: {col.column.type} -> {new.display} needs no rewrite",))

    refuse_unmovable(t, col, "change the type of", references_move=args.with_references,
                     references_hint="add --with-references to convert the referencing columns "
                     "too and swap them all in one cut-over (the foreign keys are re-created "
                     "NOT VALID, then validated)")
    major = facts.server.major
    main = shadow_plan(t, col, new, args.using, major=major)
    if args.with_references:
        return plan_with_references(main, new.display, facts.references, plan_args,
                                    lambda rt, rc: shadow_plan(rt, rc, new, None, major=major))
    steps, notes = build_steps(main)
    reason = ("the conversion needs a table rewrite" if args.using is None
              else "a USING expression computes every value")
    notes.insert(0, f"expand/contract: {col.column.type} -> {new.display}; {reason}")
    if args.using is not None:
        notes.append("writes whose value the USING expression cannot convert fail while "
                     "the trigger is installed, as they would after the change")
    if facts.server.major < 12 and col.column.not_null:
        notes.append("PostgreSQL < 12 scans the table for SET NOT NULL under ACCESS EXCLUSIVE")
    return Plan("change-type", t.display, plan_args, tuple(steps), notes=tuple(notes))


def shadow_plan(t: TableFacts, col: ColumnDetails, new: NewTypeFacts,
                using: str | None, *, major: int) -> ShadowPlan:
    """The shadow-column change of ``t.col`` to ``new`` (converted by ``using``, or cast)."""
    name = sql.Identifier(col.name)
    shadow = shadow_name(t, col.name, "new")
    parked = shadow_name(t, col.name, "old")
    for taken in (shadow, parked):
        if t.column(taken) is not None:
            raise CatalogError(
                f"column {render(sql.Identifier(taken))} already exists in {t.display} "
                "(left over from an earlier change-type?)",
                hint="roll that job back with `online rollback JOB`, or drop the column",
            )
    typ: sql.Composable = sql.SQL(new.display)
    if col.collation is not None and new.collatable:
        typ = sql.SQL("{} COLLATE {}").format(typ, sql.Identifier(*col.collation))
    # Assignment semantics, as ALTER COLUMN TYPE: a value that does not fit
    # (too long for varchar(n), out of range) raises instead of being cut.
    shadow_id = sql.Identifier(shadow)
    if using is None:
        conv_row: sql.Composable = sql.SQL("NEW.") + name
        conv_table: sql.Composable = name
        where = sql.SQL("{} IS NULL AND {} IS NOT NULL").format(shadow_id, name)
    else:
        # The USING expression names the table's columns, as in an UPDATE; in
        # the trigger the same names are exposed by selecting from the row.
        conv_table = sql.SQL("({})").format(sql.SQL(using))
        conv_row = sql.SQL("(SELECT {} FROM (SELECT NEW.*) AS pgonline_row)").format(conv_table)
        where = sql.SQL("{} IS NULL").format(shadow_id)
    body = sql.SQL("BEGIN\n  NEW.{} := {};\n  RETURN NEW;\nEND").format(
        sql.Identifier(shadow), conv_row)
    # A plain conversion depends on the column alone: an UPDATE that leaves
    # it unchanged (the backfill's own, or the application's of other
    # columns) leaves the shadow value right, so the trigger need not run.
    # "Unchanged" is the same bytes (record_image_eq, the function of the *=
    # operator, which a ROW() comparison would apply per column), not "=":
    # 1.0 and 1.00 are equal numerics, but the shadow must follow the new one.
    # A USING expression may read other columns: its trigger runs on every write.
    update_when = (render(sql.SQL(
        "NOT pg_catalog.record_image_eq(ROW(NEW.{0}), ROW(OLD.{0}))").format(name))
        if using is None else None)
    return ShadowPlan(
        table=t, col=col, shadow=shadow, shadow_type_sql=render(typ), final_name=col.name,
        parked_name=parked, function_body=render(body), trigger_prefix="zz_pgonline_sync",
        backfill_set=render(sql.SQL("{} = {}").format(sql.Identifier(shadow), conv_table)),
        backfill_where=render(where),
        restore_hint=f"the column already has type {new.display}; to go back, run "
        f"`online change-type {t.display} {render(name)} '{col.column.type}'`",
        server_major=major, update_when=update_when,
    )
