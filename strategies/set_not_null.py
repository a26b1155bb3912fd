"""set-not-null: make an existing column NOT NULL without a long lock.

Problem: ``ALTER TABLE t ALTER COLUMN c SET NOT NULL`` scans the whole table
to prove there is no NULL, under ACCESS EXCLUSIVE: nothing can read or write
the table until the scan ends.

What we do instead:

1. (optional, ``--backfill EXPR``) fill ``c`` where it IS NULL, in short keyset
   batches;

then, on PostgreSQL >= 18, which can add a NOT NULL constraint NOT VALID:

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

Pre-flight (done by the command, read-only) counts the NULLs: with NULLs and
no ``--backfill`` the change is refused before anything is modified.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import not_null_steps, render, require_columns
from psycopg import sql

from pgonline.errors import CatalogError, PreflightError
from pgonline.facts import ServerFacts, TableFacts
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
    steps += not_null_steps(t, args.column, major=facts.server.major)
    if facts.server.major < 12:
        notes.append("PostgreSQL < 12 scans the table for SET NOT NULL under ACCESS EXCLUSIVE")
    return Plan("set-not-null", t.display, asdict(args), tuple(steps), notes=tuple(notes))
