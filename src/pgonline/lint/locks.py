"""Which statements take a lock on an existing table that blocks application traffic.

Used by ``missing-lock-timeout``: any lock that conflicts with the ROW
EXCLUSIVE lock of INSERT/UPDATE/DELETE (SHARE and stronger) or with plain
SELECT (ACCESS EXCLUSIVE) must be *waited for*, and while a DDL statement
waits in the lock queue every later query on that table queues behind it.
Without ``lock_timeout`` one long-running SELECT turns a millisecond ALTER
into an outage.  Locks that only conflict with other maintenance (SHARE
UPDATE EXCLUSIVE: VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY) do not
queue application queries and are not listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from pgonline.lint.names import TableRef
from pgonline.lint.state import LintContext

# ALTER TABLE subcommands that take only SHARE UPDATE EXCLUSIVE (reads and writes continue).
_WEAK_ALTERS = frozenset({
    AlterTableType.AT_ValidateConstraint, AlterTableType.AT_SetStatistics,
    AlterTableType.AT_ClusterOn, AlterTableType.AT_DropCluster, AlterTableType.AT_SetRelOptions,
    AlterTableType.AT_ResetRelOptions, AlterTableType.AT_AttachPartition,
})


def _foreign_keys(constraints: Any) -> Iterator[TableRef]:
    for con in constraints or ():
        if isinstance(con, ast.Constraint) and con.contype == ConstrType.CONSTR_FOREIGN and con.pktable:
            yield TableRef.of(con.pktable)


def _create_table_references(node: ast.CreateStmt) -> Iterator[TableRef]:
    yield from _foreign_keys(node.constraints)
    for elt in node.tableElts or ():
        if isinstance(elt, ast.ColumnDef):
            yield from _foreign_keys(elt.constraints)
        elif isinstance(elt, ast.Constraint):
            yield from _foreign_keys((elt,))


def _alter_table(node: ast.AlterTableStmt) -> Iterator[tuple[TableRef, str]]:
    if node.objtype != ObjectType.OBJECT_TABLE or node.relation is None:
        return
    table = TableRef.of(node.relation)
    strong = False
    for cmd in node.cmds or ():
        if cmd.subtype in _WEAK_ALTERS:
            continue
        if cmd.subtype == AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
            continue
        strong = True
        if isinstance(cmd.def_, ast.Constraint):
            for ref in _foreign_keys((cmd.def_,)):
                yield ref, "SHARE ROW EXCLUSIVE (referenced by a new foreign key)"
        elif isinstance(cmd.def_, ast.ColumnDef):
            for ref in _foreign_keys(cmd.def_.constraints):
                yield ref, "SHARE ROW EXCLUSIVE (referenced by a new foreign key)"
    if strong:
        yield table, "ACCESS EXCLUSIVE"


def blocking_locks(node: Any) -> Iterator[tuple[TableRef, str]]:
    """(table, lock) pairs for every table the statement locks against application traffic."""
    if isinstance(node, ast.AlterTableStmt):
        yield from _alter_table(node)
    elif isinstance(node, ast.IndexStmt) and not node.concurrent:
        yield TableRef.of(node.relation), "SHARE (blocks writes while the index builds)"
    elif isinstance(node, ast.CreateStmt):
        for ref in _create_table_references(node):
            yield ref, "SHARE ROW EXCLUSIVE (referenced by a new foreign key)"
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            yield TableRef.from_names(names), "ACCESS EXCLUSIVE"
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX \
            and not node.concurrent:
        # The lock is on the index's table, which the statement does not name.
        for names in node.objects or ():
            yield TableRef.from_names(names), "ACCESS EXCLUSIVE on the table of index"
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TRIGGER:
        for names in node.objects or ():
            yield TableRef.from_names(tuple(names)[:-1]), "ACCESS EXCLUSIVE"
    elif isinstance(node, ast.RenameStmt) and node.relation is not None and node.renameType in (
            ObjectType.OBJECT_TABLE, ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT):
        yield TableRef.of(node.relation), "ACCESS EXCLUSIVE"
    elif isinstance(node, ast.CreateTrigStmt):
        yield TableRef.of(node.relation), "SHARE ROW EXCLUSIVE"
    elif isinstance(node, ast.TruncateStmt):
        for rel in node.relations or ():
            yield TableRef.of(rel), "ACCESS EXCLUSIVE"
    elif isinstance(node, ast.ClusterStmt) and node.relation is not None:
        yield TableRef.of(node.relation), "ACCESS EXCLUSIVE"
    elif isinstance(node, ast.VacuumStmt) and any(
            getattr(opt, "defname", None) == "full" for opt in node.options or ()):
        for rel in node.rels or ():
            if getattr(rel, "relation", None) is not None:
                yield TableRef.of(rel.relation), "ACCESS EXCLUSIVE"


def existing_blocking_locks(node: Any, ctx: LintContext) -> list[tuple[TableRef, str]]:
    return [(ref, lock) for ref, lock in blocking_locks(node) if not ctx.is_new(ref)]
