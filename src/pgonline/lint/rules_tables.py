"""Table rules: renames and drops of tables the application uses."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import DropBehavior, ObjectType

from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext


@rule("rename-table", Severity.ERROR,
      summary="Renaming a table breaks every running application instance that uses the old name.",
      help="create the new name as an updatable view over the table (or the reverse) for the rollout, "
           "then drop the view once no deployed code uses the old name",
      nodes=(ast.RenameStmt,))
def rename_table(node: ast.RenameStmt, ctx: LintContext) -> Iterator[Hit]:
    if node.renameType != ObjectType.OBJECT_TABLE or node.relation is None:
        return
    table = TableRef.of(node.relation)
    if not ctx.is_new(table):
        yield Hit(f"RENAME TABLE {table} TO {node.newname}: every query of the running application "
                  f"that names {table} fails at once")


@rule("drop-table", Severity.ERROR,
      summary="Dropping an existing table loses its data and breaks code that still uses it.",
      help="stop using the table in deployed code first; keep a backup or rename it aside for a while; "
           "then drop it and mark the statement `-- pgonline:ignore drop-table`",
      nodes=(ast.DropStmt,))
def drop_table(node: ast.DropStmt, ctx: LintContext) -> Iterator[Hit]:
    if node.removeType != ObjectType.OBJECT_TABLE:
        return
    for names in node.objects or ():
        table = TableRef.from_names(names)
        if not ctx.is_new(table):
            cascade = " with CASCADE (also drops dependent views and foreign keys)" \
                if node.behavior == DropBehavior.DROP_CASCADE else ""
            yield Hit(f"DROP TABLE {table}{ctx.size(table)}{cascade} deletes its data; running code "
                      f"that uses it fails")
