"""The fill trigger: rows the application writes during a backfill get the value too (pure).

While ``--backfill EXPR`` walks the existing rows, the application keeps
inserting and updating rows with code that does not know the column, so it
leaves the column NULL.  Without help those rows stay NULL, ``VALIDATE`` of
the NOT NULL constraint fails, and the ``NOT VALID`` constraint left in place
rejects the application's own inserts.  A ``BEFORE INSERT OR UPDATE`` row
trigger installed before the first such write sets the column to EXPR,
computed over ``NEW``, whenever the write leaves it NULL; it is dropped once
NOT NULL is validated.

Ordering: PostgreSQL fires BEFORE row triggers of a table in name order.
Ours is named ``zz_pgonline_fill_...`` so that it runs after the
application's own BEFORE triggers (names starting with a letter, digit or
underscore sort earlier): it then computes EXPR from the row as they left
it, the row that is actually stored, and a value one of them put in the
column is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgonline.catalog.facts import TableFacts
from pgonline.engine.plan import LockLevel, Phase, Step
from pgonline.errors import UsageError
from pgonline.sql.names import helper_name
from pgonline.sql.render import render
from pgonline.sql.row_expression import over_new_row

TRIGGER_PREFIX = "zz_pgonline_fill"
DOLLAR_TAG = "$pgonline_fill$"


@dataclass(frozen=True)
class FillTrigger:
    """The rendered SQL to create and drop one table column's fill trigger."""

    name: str  # the trigger's and its function's name
    create_sql: str
    drop_sql: str


def fill_trigger(t: TableFacts, column: str, expr: str) -> FillTrigger:
    """The trigger (and its function) that sets ``column`` to ``expr`` when a write leaves it NULL.

    The function lives in the table's schema and pins the search_path in
    effect when it is created (ours, the one the backfill runs with), so the
    application's own search_path cannot change what EXPR's names resolve
    to.  It runs as the writing role (SECURITY INVOKER, the default): it grants
    nobody anything.
    """
    name = helper_name(TRIGGER_PREFIX, t.schema, t.name, column)
    trigger = sql.Identifier(name)
    function = sql.Identifier(t.schema, name)
    col = sql.Identifier(column)
    value = over_new_row(expr, schema=t.schema, table=t.name)
    body = sql.SQL(
        "BEGIN\n  IF NEW.{col} IS NULL THEN\n    NEW.{col} := {value};\n  END IF;\n"
        "  RETURN NEW;\nEND"
    ).format(col=col, value=sql.SQL(value))
    if DOLLAR_TAG in render(body):
        raise UsageError(f"names and expressions must not contain {DOLLAR_TAG}")
    create = sql.SQL(
        "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql\n"
        "SET search_path FROM CURRENT AS {tag}\n{body}\n{tag};\n"
        "DROP TRIGGER IF EXISTS {trg} ON {table};\n"
        "CREATE TRIGGER {trg} BEFORE INSERT OR UPDATE ON {table}\n"
        "FOR EACH ROW EXECUTE FUNCTION {fn}()"
    ).format(fn=function, tag=sql.SQL(DOLLAR_TAG), body=body, trg=trigger, table=t.ident)
    drop = sql.SQL("DROP TRIGGER IF EXISTS {} ON {};\nDROP FUNCTION IF EXISTS {}()").format(
        trigger, t.ident, function)
    return FillTrigger(name=name, create_sql=render(create), drop_sql=render(drop))


def install_step(trigger: FillTrigger) -> Step:
    """Install the trigger on its own (set-not-null: the column already exists)."""
    return Step(
        id="install-fill-trigger", phase=Phase.EXPAND, lock=LockLevel.SHARE_ROW_EXCLUSIVE,
        description="install the trigger that fills the column for rows the application writes",
        sql=trigger.create_sql, undo_sql=trigger.drop_sql,
        why_safe="CREATE TRIGGER is a catalog change under SHARE ROW EXCLUSIVE (reads go on, "
        "writes wait only for the lock, under lock_timeout); its name sorts after the "
        "application's BEFORE triggers, so it sees the row they leave",
    )


def drop_step(trigger: FillTrigger, *, keeps: str, gate: str | None = None) -> Step:
    """Drop the trigger once NOT NULL is validated: from then on the constraint rules.

    ``gate``: when the column is NOT NULL with no default, code that does not
    know it can only keep inserting while the trigger fills it, so the step
    waits until the operator says every writer sets the column.
    """
    return Step(
        gate=gate,
        id="drop-fill-trigger", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
        description=f"drop the fill trigger and its function ({keeps})",
        sql=trigger.drop_sql,
        why_safe="DROP TRIGGER and DROP FUNCTION are catalog-only changes; the lock is held "
        "for milliseconds, under lock_timeout",
    )


def writers_must_set(column: str) -> str:
    """The gate of a trigger drop that would make unaware writers' INSERTs fail."""
    return (f"deploy application code that sets {column} on every INSERT (and never writes "
            "NULL to it) first: once the fill trigger is gone, NOT NULL with no default "
            "rejects a write that leaves it NULL")
