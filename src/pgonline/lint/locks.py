"""Which statements take a lock on an existing table that blocks application traffic.

Used by ``missing-lock-timeout``: any lock that conflicts with the ROW
EXCLUSIVE lock of INSERT/UPDATE/DELETE (SHARE and stronger) or with plain
SELECT (ACCESS EXCLUSIVE) must be *waited for*, and while a DDL statement
waits in the lock queue every later query on that table that conflicts with
it (writes; reads too for ACCESS EXCLUSIVE) queues behind it.  Without
``lock_timeout`` one long-running SELECT turns a millisecond ALTER into an
outage.  Locks that only conflict with other maintenance (SHARE UPDATE
EXCLUSIVE: VALIDATE CONSTRAINT, CREATE INDEX CONCURRENTLY) do not queue
application queries and are not listed.

:func:`target_lock` answers a narrower question for ``online migrate up``:
which lock a statement holds on the table it changes, weak ones included.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from pgonline.lint.names import TableRef
from pgonline.lint.state import LintContext

ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
SHARE = "SHARE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"

# ALTER TABLE subcommands that take only SHARE UPDATE EXCLUSIVE (reads and writes continue).
_WEAK_ALTERS = frozenset({
    AlterTableType.AT_ValidateConstraint, AlterTableType.AT_SetStatistics,
    AlterTableType.AT_ClusterOn, AlterTableType.AT_DropCluster, AlterTableType.AT_SetRelOptions,
    AlterTableType.AT_ResetRelOptions, AlterTableType.AT_AttachPartition,
})


@dataclass(frozen=True)
class TableLock:
    """A lock a statement takes on ``ref``, or on the table of index ``ref`` (``of_index``)."""

    ref: TableRef
    mode: str  # PostgreSQL's name of the lock mode, e.g. "ACCESS EXCLUSIVE"
    why: str = ""  # what it blocks, or why this table is locked at all
    of_index: bool = False

    @property
    def blocks_reads(self) -> bool:
        # Only ACCESS EXCLUSIVE conflicts with the ACCESS SHARE of a plain SELECT.
        return self.mode == ACCESS_EXCLUSIVE

    def __str__(self) -> str:
        return f"{self.mode} ({self.why})" if self.why else self.mode


_REFERENCED = "referenced by a new foreign key"


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


def _command_mode(cmd: Any) -> str | None:
    """The lock one ALTER TABLE sub-command needs; None for the weak ones."""
    if cmd.subtype in _WEAK_ALTERS:
        return None
    if cmd.subtype == AlterTableType.AT_DetachPartition and getattr(cmd.def_, "concurrent", False):
        return None
    if cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint) \
            and cmd.def_.contype == ConstrType.CONSTR_FOREIGN:
        return SHARE_ROW_EXCLUSIVE  # ADD FOREIGN KEY locks both tables against writes only
    return ACCESS_EXCLUSIVE


def _alter_mode(node: ast.AlterTableStmt) -> str | None:
    """The strongest lock among the sub-commands (PostgreSQL takes one lock for all)."""
    modes = {_command_mode(cmd) for cmd in node.cmds or ()}
    return next((m for m in (ACCESS_EXCLUSIVE, SHARE_ROW_EXCLUSIVE) if m in modes), None)


def _alter_table(node: ast.AlterTableStmt) -> Iterator[TableLock]:
    if node.objtype != ObjectType.OBJECT_TABLE or node.relation is None:
        return
    mode = _alter_mode(node)
    if mode is None:
        return
    for cmd in node.cmds or ():
        if _command_mode(cmd) is None:
            continue
        if isinstance(cmd.def_, ast.Constraint):
            for ref in _foreign_keys((cmd.def_,)):
                yield TableLock(ref, SHARE_ROW_EXCLUSIVE, _REFERENCED)
        elif isinstance(cmd.def_, ast.ColumnDef):
            for ref in _foreign_keys(cmd.def_.constraints):
                yield TableLock(ref, SHARE_ROW_EXCLUSIVE, _REFERENCED)
    yield TableLock(TableRef.of(node.relation), mode)


def blocking_locks(node: Any) -> Iterator[TableLock]:
    """Every lock the statement takes that blocks application traffic on some table."""
    if isinstance(node, ast.AlterTableStmt):
        yield from _alter_table(node)
    elif isinstance(node, ast.IndexStmt) and not node.concurrent:
        yield TableLock(TableRef.of(node.relation), SHARE, "blocks writes while the index builds")
    elif isinstance(node, ast.CreateStmt):
        for ref in _create_table_references(node):
            yield TableLock(ref, SHARE_ROW_EXCLUSIVE, _REFERENCED)
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            yield TableLock(TableRef.from_names(names), ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX \
            and not node.concurrent:
        # The lock is on the index's table, which the statement does not name.
        for names in node.objects or ():
            yield TableLock(TableRef.from_names(names), ACCESS_EXCLUSIVE, of_index=True)
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TRIGGER:
        for names in node.objects or ():
            yield TableLock(TableRef.from_names(tuple(names)[:-1]), ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.RenameStmt) and node.relation is not None and node.renameType in (
            ObjectType.OBJECT_TABLE, ObjectType.OBJECT_COLUMN, ObjectType.OBJECT_TABCONSTRAINT):
        yield TableLock(TableRef.of(node.relation), ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.CreateTrigStmt):
        yield TableLock(TableRef.of(node.relation), SHARE_ROW_EXCLUSIVE)
    elif isinstance(node, ast.TruncateStmt):
        for rel in node.relations or ():
            yield TableLock(TableRef.of(rel), ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.ClusterStmt) and node.relation is not None:
        yield TableLock(TableRef.of(node.relation), ACCESS_EXCLUSIVE)
    elif isinstance(node, ast.VacuumStmt) and any(
            getattr(opt, "defname", None) == "full" for opt in node.options or ()):
        for rel in node.rels or ():
            if getattr(rel, "relation", None) is not None:
                yield TableLock(TableRef.of(rel.relation), ACCESS_EXCLUSIVE)


def existing_blocking_locks(node: Any, ctx: LintContext) -> list[TableLock]:
    return [lock for lock in blocking_locks(node) if not ctx.is_new(lock.ref)]


def target_lock(node: Any) -> TableLock | None:
    """The lock an ALTER TABLE, CREATE INDEX or DROP INDEX takes on the table it changes.

    Unlike :func:`blocking_locks` this includes the weak locks (SHARE UPDATE
    EXCLUSIVE of the CONCURRENTLY forms and of VALIDATE CONSTRAINT) and leaves
    out the tables a new foreign key references: it answers "what does this
    statement hold on its own table", for ``online migrate up``'s warnings.
    """
    if isinstance(node, ast.AlterTableStmt) and node.relation is not None:
        return TableLock(TableRef.of(node.relation), _alter_mode(node) or SHARE_UPDATE_EXCLUSIVE)
    if isinstance(node, ast.IndexStmt) and node.relation is not None:
        if node.concurrent:
            return TableLock(TableRef.of(node.relation), SHARE_UPDATE_EXCLUSIVE)
        return TableLock(TableRef.of(node.relation), SHARE, "blocks writes while the index builds")
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX and node.objects:
        mode = SHARE_UPDATE_EXCLUSIVE if node.concurrent else ACCESS_EXCLUSIVE
        return TableLock(TableRef.from_names(node.objects[0]), mode, of_index=True)
    return None
