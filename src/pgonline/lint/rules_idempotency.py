"""Idempotency: a migration that failed half-way should be safe to run again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext

_DROP_KINDS = {
    ObjectType.OBJECT_TABLE: "TABLE", ObjectType.OBJECT_INDEX: "INDEX", ObjectType.OBJECT_VIEW: "VIEW",
    ObjectType.OBJECT_SEQUENCE: "SEQUENCE", ObjectType.OBJECT_TRIGGER: "TRIGGER",
    ObjectType.OBJECT_FUNCTION: "FUNCTION", ObjectType.OBJECT_TYPE: "TYPE",
    ObjectType.OBJECT_SCHEMA: "SCHEMA", ObjectType.OBJECT_MATVIEW: "MATERIALIZED VIEW",
}


def _problems(node: Any) -> Iterator[Hit]:
    if isinstance(node, ast.CreateStmt) and not node.if_not_exists:
        yield Hit(f"CREATE TABLE {TableRef.of(node.relation)} fails if the migration is run again",
                  help="use CREATE TABLE IF NOT EXISTS")
    elif isinstance(node, ast.IndexStmt) and not node.if_not_exists:
        name = node.idxname or f"on {TableRef.of(node.relation)}"
        extra = "" if node.idxname else " (and an unnamed index is created again on every run)"
        yield Hit(f"CREATE INDEX {name} fails if the migration is run again{extra}",
                  help="name the index and use IF NOT EXISTS; after a failed CREATE INDEX CONCURRENTLY "
                       "drop the INVALID index first, since IF NOT EXISTS would skip it")
    elif isinstance(node, ast.DropStmt) and not node.missing_ok and node.removeType in _DROP_KINDS:
        yield Hit(f"DROP {_DROP_KINDS[node.removeType]} fails if the migration is run again",
                  help="use DROP ... IF EXISTS")
    elif isinstance(node, ast.CreateSeqStmt) and not node.if_not_exists:
        yield Hit("CREATE SEQUENCE fails if the migration is run again",
                  help="use CREATE SEQUENCE IF NOT EXISTS")
    elif isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            if cmd.subtype == AlterTableType.AT_AddColumn and not cmd.missing_ok:
                yield Hit(f"ADD COLUMN {cmd.def_.colname} fails if the migration is run again", cmd.def_,
                          help="use ADD COLUMN IF NOT EXISTS")
            elif cmd.subtype == AlterTableType.AT_DropColumn and not cmd.missing_ok:
                yield Hit(f"DROP COLUMN {cmd.name} fails if the migration is run again",
                          help="use DROP COLUMN IF EXISTS")


@rule("non-idempotent", Severity.WARNING,
      summary="CREATE without IF NOT EXISTS / DROP without IF EXISTS fails when a half-applied "
              "migration is run again.",
      help="use IF NOT EXISTS / IF EXISTS so a re-run after a partial failure converges",
      nodes=(ast.CreateStmt, ast.IndexStmt, ast.DropStmt, ast.CreateSeqStmt, ast.AlterTableStmt))
def non_idempotent(node: Any, ctx: LintContext) -> Iterator[Hit]:
    # Inside BEGIN ... COMMIT a failure rolls everything back, so a re-run starts clean.
    if ctx.state.in_transaction:
        return
    yield from _problems(node)
