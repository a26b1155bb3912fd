"""add-primary-key: add a PRIMARY KEY without blocking writes during the index build.

Problem: ``ALTER TABLE t ADD PRIMARY KEY (cols)`` builds the index (and, for
nullable columns, scans for NULLs to SET NOT NULL) under ACCESS EXCLUSIVE.

What we do instead: the same two steps as add-unique, ``CREATE UNIQUE INDEX
CONCURRENTLY`` then ``ADD CONSTRAINT ... PRIMARY KEY USING INDEX`` (catalog
only).  The key columns must already be NOT NULL: otherwise PostgreSQL would
run SET NOT NULL, a full scan under ACCESS EXCLUSIVE, inside the second step.
We refuse and point at ``online set-not-null``, which gets there without the
long lock.
"""

from __future__ import annotations

from pgonline.strategies._ddl import require_columns
from pgonline.strategies.add_unique import (
    AddUniqueArgs,
    AddUniqueFacts,
    gather,
    parse_key,
    plan_unique_constraint,
)
from psycopg import sql

from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Change, Command, Opt, strategy
from pgonline.sql.names import derived_name
from pgonline.sql.render import render


def default_pk_name(table: str) -> str:
    """``<table>_pkey`` like PostgreSQL; hashed when over 63 bytes."""
    return derived_name(table, "pkey")


def parse(table: str, columns: tuple[str, ...], *,
          name: str | None = None) -> Change[AddUniqueArgs]:
    return parse_key(table, columns, name, pk_name)


def pk_name(table: str, _columns: tuple[str, ...]) -> str:
    """The default name, in the form :func:`~pgonline.strategies.add_unique.key_change` takes."""
    return default_pk_name(table)


COMMAND = Command(
    parse=parse, gather=gather,
    builds_index=True,
    help="Add a PRIMARY KEY on TABLE (COLUMNS...) via a concurrently built index.",
    params=(
        Arg("table"), Arg("columns", many=True),
        Opt("--name", "name", help="Constraint name (default: <table>_pkey)."),
    ),
    replaces="`ADD CONSTRAINT ... PRIMARY KEY`",
    does="refuses nullable key columns, reports duplicates; unique index concurrently, "
    "then `USING INDEX`",
    doc="add-unique",
)


@strategy("add-primary-key", command=COMMAND)
def plan_add_primary_key(facts: AddUniqueFacts, args: AddUniqueArgs) -> Plan:
    t = facts.table
    if t.primary_key:
        raise CatalogError(
            f"{t.display} already has a primary key ({', '.join(t.primary_key)})",
            hint="a table has at most one primary key; use add-unique for another key",
        )
    require_columns(t, args.columns)
    nullable = [c for c in args.columns if not (col := t.column(c)) or not col.not_null]
    if nullable:
        names = ", ".join(render(sql.Identifier(c)) for c in nullable)
        raise CatalogError(
            f"primary key column(s) {names} of {t.display} are nullable",
            hint="make them NOT NULL first without a long lock: "
            + "; ".join(f"`online set-not-null {t.display} {c}`" for c in nullable),
        )
    return plan_unique_constraint("add-primary-key", facts, args, primary=True)
