"""Constraint rules: validate without blocking, build unique indexes concurrently."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext, existing_table_cmds

_VALIDATED = {ConstrType.CONSTR_FOREIGN: "FOREIGN KEY", ConstrType.CONSTR_CHECK: "CHECK",
              ConstrType.CONSTR_NOTNULL: "NOT NULL"}
_INDEXED = {ConstrType.CONSTR_UNIQUE: "UNIQUE", ConstrType.CONSTR_PRIMARY: "PRIMARY KEY",
            ConstrType.CONSTR_EXCLUSION: "EXCLUDE"}


def _describe(con: Any, kind: str) -> str:
    return f"ADD CONSTRAINT {con.conname} {kind}" if con.conname else f"ADD {kind}"


def _validation_hit(table: TableRef, con: Any, ctx: LintContext, inline: str | None) -> Hit:
    kind = _VALIDATED[con.contype]
    what = f"ADD COLUMN {inline} ... {kind}" if inline else _describe(con, kind)
    if con.contype == ConstrType.CONSTR_FOREIGN:
        parent = TableRef.of(con.pktable)
        locks = f"SHARE ROW EXCLUSIVE locks on {table} and {parent} (writes to both blocked)"
    else:
        locks = f"an ACCESS EXCLUSIVE lock on {table}"
    message = f"{what} checks every row of {table}{ctx.size(table)} while holding {locks}"
    if inline:
        return Hit(message, con, help="add the column first, then ADD CONSTRAINT ... NOT VALID and "
                                      "VALIDATE CONSTRAINT in a separate statement")
    return Hit(message, con)


def _added_constraints(node: ast.AlterTableStmt, ctx: LintContext
                       ) -> Iterator[tuple[TableRef, Any, str | None]]:
    """(table, constraint, inline column) for each constraint this statement adds to an
    existing table: ``ADD CONSTRAINT`` (inline None) or ``ADD COLUMN ... <constraint>``."""
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_AddConstraint,
                                           AlterTableType.AT_AddColumn):
        if isinstance(cmd.def_, ast.Constraint):
            yield table, cmd.def_, None
        elif isinstance(cmd.def_, ast.ColumnDef):
            for con in cmd.def_.constraints or ():
                yield table, con, cmd.def_.colname


@rule("constraint-missing-not-valid", Severity.ERROR,
      summary="Adding a FOREIGN KEY, CHECK or NOT NULL constraint to an existing table without "
              "NOT VALID validates all rows while blocking writes.",
      help="ADD CONSTRAINT ... NOT VALID (instant, enforced for new rows), then "
           "ALTER TABLE ... VALIDATE CONSTRAINT ... in its own transaction (reads and writes continue)",
      nodes=(ast.AlterTableStmt,))
def missing_not_valid(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, con, inline in _added_constraints(node, ctx):
        if inline is None:
            if con.contype in _VALIDATED and not con.skip_validation:
                yield _validation_hit(table, con, ctx, None)
        elif con.contype in (ConstrType.CONSTR_FOREIGN, ConstrType.CONSTR_CHECK):
            yield _validation_hit(table, con, ctx, inline)


def _columns(con: Any) -> str:
    return ", ".join(k.sval for k in con.keys or ())


@rule("unique-constraint-without-index", Severity.ERROR,
      summary="Adding a UNIQUE/PRIMARY KEY/EXCLUDE constraint to an existing table builds its index "
              "under an ACCESS EXCLUSIVE lock.",
      help="CREATE UNIQUE INDEX CONCURRENTLY idx ON t (cols); then ALTER TABLE t ADD CONSTRAINT name "
           "UNIQUE USING INDEX idx (instant)",
      nodes=(ast.AlterTableStmt,))
def unique_without_index(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, con, inline in _added_constraints(node, ctx):
        if con.contype not in _INDEXED or con.indexname:
            continue
        kind = _INDEXED[con.contype]
        what = f"ADD COLUMN {inline} ... {kind}" if inline else _describe(con, kind)
        message = (f"{what} builds an index on {table}{ctx.size(table)} while holding an ACCESS "
                   f"EXCLUSIVE lock (reads and writes blocked)")
        if con.contype == ConstrType.CONSTR_EXCLUSION:
            yield Hit(message, con, help="exclusion constraints have no USING INDEX form; build them "
                                         "on a new table or in a maintenance window")
        elif con.contype == ConstrType.CONSTR_PRIMARY and not inline:
            yield Hit(message, con, help=f"make ({_columns(con)}) NOT NULL via a validated CHECK, "
                                         f"CREATE UNIQUE INDEX CONCURRENTLY idx ON {table} "
                                         f"({_columns(con)}), then ADD CONSTRAINT ... PRIMARY KEY "
                                         f"USING INDEX idx")
        elif inline:
            yield Hit(message, con, help="add the column without the constraint, CREATE UNIQUE INDEX "
                                         "CONCURRENTLY on it, then ADD CONSTRAINT ... USING INDEX")
        else:
            yield Hit(message, con, help=f"CREATE UNIQUE INDEX CONCURRENTLY idx ON {table} "
                                         f"({_columns(con)}); then ALTER TABLE {table} ADD CONSTRAINT "
                                         f"{con.conname or 'name'} UNIQUE USING INDEX idx (instant)")
