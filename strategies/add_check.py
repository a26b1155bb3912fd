"""add-check: add a CHECK constraint without scanning under an exclusive lock.

Problem: ``ALTER TABLE t ADD CONSTRAINT c CHECK (expr)`` checks every existing
row while holding ACCESS EXCLUSIVE: the table is unreadable and unwritable
for the length of a full scan.

What we do instead: ``ADD CONSTRAINT ... NOT VALID`` (catalog only: new and
updated rows are checked from now on, existing rows are not scanned), then,
in a separate transaction, ``VALIDATE CONSTRAINT``, which scans under SHARE
UPDATE EXCLUSIVE and so lets reads and writes continue.

Pre-flight (read-only, in :func:`gather`) counts existing rows for which
the expression is false and refuses with a few sample keys: VALIDATE would
fail on them after the constraint had already started rejecting writes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import (
    refuse_violations,
    validate_step,
)
from pgonline.strategies._partitioned_constraints import leaf_validate_steps
from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight
from pgonline.catalog.facts import DataViolations, TableFacts
from pgonline.catalog.partitions import PartitionTree, partition_tree
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Change, Command, strategy
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.sql.render import render


@dataclass(frozen=True)
class AddCheckArgs:
    name: str
    expression: str


@dataclass(frozen=True)
class AddCheckFacts:
    table: TableFacts
    violations: DataViolations
    partitions: PartitionTree | None = None  # a partitioned table: validated leaf by leaf


def refuse_existing_constraint(t: TableFacts, name: str) -> None:
    if t.constraint(name) is not None:
        raise CatalogError(
            f"constraint {render(sql.Identifier(name))} already exists on {t.display}",
            hint="choose another name",
        )


def parse(table: str, name: str, expression: str) -> Change[AddCheckArgs]:
    return Change(QualifiedName.parse(table), AddCheckArgs(
        name=parse_identifier(name),
        expression=expressions.expression(expression, "CHECK expression")))


async def gather(conn: Conn, table: TableFacts, args: AddCheckArgs) -> AddCheckFacts:
    # The server plans it as a boolean over this table's columns.
    await preflight.vet_boolean(conn, table, args.expression, "bad CHECK expression")
    violations = await preflight.check_violations(conn, table, args.expression)
    tree = (await partition_tree(conn, table.oid)
            if await index_catalog.is_partitioned(conn, table.oid) else None)
    return AddCheckFacts(table=table, violations=violations, partitions=tree)


COMMAND = Command(
    parse=parse, gather=gather,
    postponable=True,
    help="Add CHECK (EXPR) named NAME to TABLE: NOT VALID, then VALIDATE.",
    params=(Arg("table"), Arg("name"), Arg("expression", metavar="EXPR")),
    replaces="`ADD CONSTRAINT ... CHECK`",
    does="reports violating rows; NOT VALID, then VALIDATE",
)


@strategy("add-check", command=COMMAND)
def plan_add_check(facts: AddCheckFacts, args: AddCheckArgs) -> Plan:
    t = facts.table
    refuse_existing_constraint(t, args.name)
    refuse_violations(
        facts.violations, f"rows of {t.display} violate CHECK ({args.expression})",
        hint="fix or delete those rows first (online backfill TABLE --set ... --where ...), "
        "then re-run",
    )
    name = sql.Identifier(args.name)
    steps: tuple[Step, ...] = (
        Step(
            id="add-constraint", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description=f"add CHECK {render(name)} NOT VALID (new writes are checked)",
            sql=render(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} CHECK ({}) NOT VALID").format(
                t.ident, name, sql.SQL(args.expression))),
            undo_sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(
                t.ident, name)),
            why_safe="NOT VALID skips the scan of existing rows; the lock is held for a catalog "
            "update only",
        ),
    )
    scan = "VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes continue"
    notes: tuple[str, ...] = ()
    if facts.partitions is not None:
        # One VALIDATE per leaf (resumable, one leaf's scan per transaction); the
        # parent's then finds them all validated and scans nothing.
        steps += tuple(leaf_validate_steps(facts.partitions, args.name, why_safe=scan))
        scan = "every partition is validated already: no scan, a catalog update"
        notes = (f"{t.display} is partitioned: the constraint is validated leaf by leaf "
                 f"({len(facts.partitions.leaves)} leaves), then on the parent without a scan",)
    steps += (validate_step(t, args.name, why_safe=scan),)
    return Plan("add-check", t.display, asdict(args), steps, notes=notes)
