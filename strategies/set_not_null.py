"""set-not-null: make an existing column NOT NULL without a long lock.

Problem: ``ALTER TABLE t ALTER COLUMN c SET NOT NULL`` scans the whole table
to prove there is no NULL, under ACCESS EXCLUSIVE: nothing can read or write
the table until the scan ends.

What we do instead:

1. (optional, ``--backfill EXPR``) fill ``c`` where it IS NULL, in short keyset
   batches;
2. ``ADD CONSTRAINT ... CHECK (c IS NOT NULL) NOT VALID``: catalog only, new
   writes are checked from now on (ACCESS EXCLUSIVE for an instant);
3. ``VALIDATE CONSTRAINT``: scans existing rows under SHARE UPDATE EXCLUSIVE,
   which does not block reads or writes;
4. ``SET NOT NULL``: PostgreSQL ≥ 12 proves it from the validated check and
   skips the scan (ACCESS EXCLUSIVE for an instant);
5. drop the helper check, which NOT NULL now makes redundant.

Pre-flight (done by the command, read-only) counts the NULLs: with NULLs and
no ``--backfill`` the change is refused before anything is modified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import constraint_exists_query, render, require_columns
from psycopg import sql

from pgonline.errors import CatalogError, PreflightError
from pgonline.facts import ServerFacts, TableFacts
from pgonline.naming import derived_name
from pgonline.plan import BackfillSpec, LockLevel, Phase, Plan, Step
from pgonline.strategy import strategy


@dataclass(frozen=True)
class SetNotNullArgs:
    column: str
    backfill: str | None = None


@dataclass(frozen=True)
class SetNotNullFacts:
    server: ServerFacts
    table: TableFacts
    null_rows: int


def not_null_steps(t: TableFacts, column: str) -> list[Step]:
    """CHECK NOT VALID → VALIDATE → SET NOT NULL → drop the check (all transactional)."""
    table, col = t.ident, sql.Identifier(column)
    name = derived_name("pgonline_nn", t.name, column)
    check = sql.Identifier(name)
    return [
        Step(
            id="add-check", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="add CHECK (col IS NOT NULL) NOT VALID",
            sql=render(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({} IS NOT NULL) NOT VALID")
                       .format(table, check, col)),
            # A check left by an earlier, abandoned attempt is reused (and validated next).
            done_if=constraint_exists_query(t, name),
            undo_sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}")
                            .format(table, check)),
            why_safe="NOT VALID skips the scan of existing rows; the lock is held for a catalog "
            "update only",
        ),
        Step(
            id="validate-check", phase=Phase.CONTRACT, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
            description="validate the check against existing rows",
            sql=render(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(table, check)),
            why_safe="VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes continue",
        ),
        Step(
            id="set-not-null", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="SET NOT NULL, proven by the validated check",
            sql=render(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(table, col)),
            undo_sql=render(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL")
                            .format(table, col)),
            why_safe="PostgreSQL >= 12 uses the validated CHECK instead of scanning the table",
        ),
        Step(
            id="drop-check", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="drop the helper check (NOT NULL now enforces it)",
            sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(table, check)),
            why_safe="dropping a constraint is a catalog-only change",
        ),
    ]


@strategy("set-not-null")
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
    if args.backfill is not None:
        key = t.batch_key()
        if key is None:
            raise CatalogError(
                f"{t.display} has no primary key or NOT NULL unique index to batch over",
                hint="add a primary key first (online add-primary-key), then retry",
            )
        steps.append(Step(
            id="backfill", phase=Phase.BACKFILL, lock=LockLevel.ROW_EXCLUSIVE,
            description=f"fill the {facts.null_rows} NULL rows in short keyset batches",
            backfill=BackfillSpec(
                schema=t.schema, table=t.name, key_columns=key,
                set_sql=render(sql.SQL("{} = ({})").format(col, sql.SQL(args.backfill))),
                where_sql=render(sql.SQL("{} IS NULL").format(col)),
            ),
            why_safe="each batch is its own short transaction; a row the application filled "
            "meanwhile no longer matches IS NULL and is left alone",
        ))
        notes.append("the application must stop writing NULLs before the contract phase, "
                     "or the NOT VALID check will reject those writes")
    steps += not_null_steps(t, args.column)
    if facts.server.major < 12:
        notes.append("PostgreSQL < 12 scans the table for SET NOT NULL under ACCESS EXCLUSIVE")
    return Plan("set-not-null", t.display, asdict(args), tuple(steps), notes=tuple(notes))
