"""rename-column: rename a column while old and new application code both keep working.

Problem: ``ALTER TABLE t RENAME COLUMN old TO new`` is instant, but every
running instance of the application still says ``old``: from that moment its
queries fail until the new code is deployed everywhere.  There is no moment at
which a rolling deploy can rename safely.

What we do instead (expand/contract with a two-way sync):

expand
    add ``new`` (same type and collation, nullable, no default: catalog only)
    and a trigger that keeps ``old`` and ``new`` equal on every write, in both
    directions: an INSERT copies whichever one was given, an UPDATE copies
    the one that changed (``new`` wins when both did).
backfill
    batched UPDATEs copy ``old`` into ``new`` for existing rows; NOT NULL is
    proven with ``CHECK ... NOT VALID`` + ``VALIDATE``; indexes on ``old`` get
    concurrent twins on ``new``.  From here on both columns hold the same
    data, so **deploy the application version that uses ``new``** (old and new
    versions can run side by side during the rolling deploy).
contract
    once no instance of the old version is left: one short transaction drops
    the trigger, moves primary key / unique constraints, indexes, default,
    NOT NULL and sequence ownership to ``new``, then ``old`` is dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from psycopg import sql

from pgonline.catalog import columns as column_catalog
from pgonline.catalog import tables
from pgonline.catalog.column_details import ColumnDetails
from pgonline.catalog.facts import ServerFacts, TableFacts
from pgonline.connection import Conn
from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Change, Command, strategy
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render

from ._shadow_column import ShadowPlan, build_steps, refuse_unmovable


@dataclass(frozen=True)
class RenameColumnArgs:
    column: str
    new_name: str


@dataclass(frozen=True)
class RenameColumnFacts:
    server: ServerFacts
    table: TableFacts
    column: ColumnDetails


def _sync_body(old: sql.Identifier, new: sql.Identifier, has_equality: bool) -> sql.Composed:
    def changed(col: sql.Identifier) -> sql.Composed:
        if has_equality:
            return sql.SQL("NEW.{0} IS DISTINCT FROM OLD.{0}").format(col)
        # Types without "=" (json, point, ...) compare by their text form.
        return sql.SQL("NEW.{0}::text IS DISTINCT FROM OLD.{0}::text").format(col)

    return sql.SQL(
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        # New code sets new; old code leaves it NULL (it has no default yet).
        "    IF NEW.{new} IS NULL THEN NEW.{new} := NEW.{old}; ELSE NEW.{old} := NEW.{new}; END IF;\n"
        "  ELSIF {new_changed} THEN\n"
        "    NEW.{old} := NEW.{new};\n"
        "  ELSE\n"
        "    NEW.{new} := NEW.{old};\n"
        "  END IF;\n"
        "  RETURN NEW;\n"
        "END"
    ).format(old=old, new=new, new_changed=changed(new))


def parse(table: str, old: str, new: str) -> Change[RenameColumnArgs]:
    return Change(QualifiedName.parse(table),
                  RenameColumnArgs(column=parse_identifier(old), new_name=parse_identifier(new)))


async def gather(conn: Conn, table: TableFacts, args: RenameColumnArgs) -> RenameColumnFacts:
    return RenameColumnFacts(server=await tables.server_facts(conn), table=table,
                             column=await column_catalog.column_details(conn, table, args.column))


COMMAND = Command(
    parse=parse, gather=gather,
    backfills=True, postponable=True,
    help="""Rename OLD to NEW so that old and new application code both work meanwhile.

    Run --phase expand, then --phase backfill, deploy code using NEW, then --phase contract.
    """,
    params=(Arg("table"), Arg("old"), Arg("new")),
    replaces="`RENAME COLUMN` (breaks running code)",
    does="expand/contract with a two-way sync trigger, so old and new code both work",
)


@strategy("rename-column", command=COMMAND)
def plan_rename_column(facts: RenameColumnFacts, args: RenameColumnArgs) -> Plan:
    t, col = facts.table, facts.column
    old, new = sql.Identifier(col.name), sql.Identifier(args.new_name)
    if args.new_name == col.name:
        raise CatalogError(f"column {render(old)} of {t.display} is already called that")
    if t.column(args.new_name) is not None:
        raise CatalogError(f"column {render(new)} already exists in {t.display}",
                           hint="pick another name, or drop that column first")
    refuse_unmovable(t, col, "rename")
    typ: sql.Composable = sql.SQL(col.column.type)
    if col.collation is not None:
        typ = sql.SQL("{} COLLATE {}").format(typ, sql.Identifier(*col.collation))
    steps, notes = build_steps(ShadowPlan(
        table=t, col=col, shadow=args.new_name, shadow_type_sql=render(typ),
        final_name=args.new_name, parked_name=None,
        function_body=render(_sync_body(old, new, col.has_equality)),
        trigger_prefix="zz_pgonline_rename",
        backfill_set=render(sql.SQL("{} = {}").format(new, old)),
        backfill_where=render(sql.SQL("{} IS NULL AND {} IS NOT NULL").format(new, old)),
        restore_hint=f"column {render(old)} has been replaced by {render(new)}; to go back, run "
        f"`online rename-column {t.display} {render(new)} {render(old)}`",
        server_major=facts.server.major,
    ))
    # From the cut-over on, the old name is gone: code that still uses it breaks.
    # So a run of all phases stops there until the operator says it is unused.
    gate = (f"deploy the application version that uses {render(new)} and make sure no instance "
            f"still uses {render(old)}: from the cut-over, {render(old)} no longer exists")
    steps = [replace(st, gate=gate) if st.id == "cutover" else st for st in steps]
    assert any(st.gate for st in steps), "the rename plan has no cut-over step"
    notes[:0] = [
        f"two columns, one value: {render(old)} and {render(new)} are kept equal by a trigger until the "
        "contract phase",
        "deploy the application version that uses the new name after the backfill phase; "
        "a run of all phases stops before the cut-over: run --phase contract only when no "
        "instance uses the old name",
    ]
    return Plan("rename-column", t.display, asdict(args), tuple(steps), notes=tuple(notes))
