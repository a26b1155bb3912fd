"""drop-column: the contract step of removing a column, with a look before the leap.

Problem: ``ALTER TABLE t DROP COLUMN c`` is catalog-only (the data stays on
disk until rows are rewritten) but needs ACCESS EXCLUSIVE; queued behind a
long query it stalls every other query on the table.  It also silently takes
indexes and constraints with it, and fails halfway into a deploy when a view
still uses the column.  And it cannot be undone: the data is gone.

What we do instead: list every object that depends on the column (indexes,
constraints, foreign keys from other tables, views, triggers, policies,
statistics, owned sequences, via ``pg_depend``) and refuse unless the user
passes ``--confirm``; then drop it under ``lock_timeout`` with retries, so
the lock is only ever taken when it can be had at once.  ``CASCADE`` is added
only when a listed object needs it (a normal dependency) and is shown in the
plan.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables
from pgonline.catalog.column_details import ColumnDetails
from pgonline.catalog.facts import ServerFacts, TableFacts
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import PreflightError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render


@dataclass(frozen=True)
class DropColumnArgs:
    column: str
    confirm: bool = False


@dataclass(frozen=True)
class DropColumnFacts:
    server: ServerFacts
    table: TableFacts
    column: ColumnDetails


def dependents_text(col: ColumnDetails) -> str:
    if not col.dependents:
        return "no dependent objects"
    return "dependent objects that go with it: " + "; ".join(d.label for d in col.dependents)


def parse(table: str, column: str, *, confirm: bool = False) -> Change[DropColumnArgs]:
    return Change(QualifiedName.parse(table),
                  DropColumnArgs(column=parse_identifier(column), confirm=confirm))


async def gather(conn: Conn, table: TableFacts, args: DropColumnArgs) -> DropColumnFacts:
    return DropColumnFacts(server=await tables.server_facts(conn), table=table,
                           column=await column_catalog.column_details(conn, table, args.column))


def preview(args: DropColumnArgs) -> tuple[DropColumnArgs, str] | None:
    """A dry run changes nothing, so without --confirm it shows the plan --confirm would run
    (and says so) instead of refusing like the real run does."""
    if args.confirm:
        return None
    return (replace(args, confirm=True),
            "without --confirm this command refuses: it discards the column's data for good")


COMMAND = Command(
    parse=parse, gather=gather, preview=preview,
    help="Drop COLUMN of TABLE under lock_timeout, after listing what depends on it.",
    params=(
        Arg("table"), Arg("column"),
        Opt("--confirm", "confirm", is_flag=True,
            help="Really drop it (and the dependent objects listed without this flag)."),
    ),
    replaces="`DROP COLUMN`",
    does="lists dependent objects, requires `--confirm`, under lock_timeout",
)


@strategy("drop-column", command=COMMAND)
def plan_drop_column(facts: DropColumnFacts, args: DropColumnArgs) -> Plan:
    t, col = facts.table, facts.column
    name = sql.Identifier(col.name)
    listing = dependents_text(col)
    cascade = any(d.needs_cascade for d in col.dependents)
    if not args.confirm:
        raise PreflightError(
            f"dropping {render(name)} from {t.display} discards its data for good; "
            f"{listing}",
            hint="deploy application code that no longer uses the column first, then re-run "
            "with --confirm",
        )
    stmt = sql.SQL("ALTER TABLE {} DROP COLUMN {}{}").format(
        t.ident, name, sql.SQL(" CASCADE") if cascade else sql.SQL(""))
    step = Step(
        id="drop-column", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
        description=f"drop column {col.name}" + (" and, with CASCADE, the objects listed"
                                                if cascade else ""),
        sql=render(stmt),
        irreversible=f"the data of column {render(name)} is gone (and so are the objects "
        "dropped with it); restore them from a backup if they are needed",
        why_safe="DROP COLUMN only marks the column dropped in the catalog (no rewrite, no "
        "scan); the lock is requested under lock_timeout and retried, never queued",
    )
    notes = [listing,
             "irreversible: `online rollback` cannot bring the data back",
             "applications using server-side prepared SELECT * statements re-prepare after it"]
    return Plan("drop-column", t.display, asdict(args), (step,), notes=tuple(notes))
