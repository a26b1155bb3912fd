"""Data changes inside migrations."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast

from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext


@rule("update-without-where", Severity.ERROR,
      summary="UPDATE of a whole existing table in one statement locks every row until commit and "
              "bloats the table.",
      help="backfill in batches of a few thousand rows by key, committing between batches "
           "(`online add-column ... --backfill` does this with throttling and resume)",
      nodes=(ast.UpdateStmt,))
def update_without_where(node: ast.UpdateStmt, ctx: LintContext) -> Iterator[Hit]:
    table = TableRef.of(node.relation)
    if node.whereClause is not None or node.fromClause or ctx.is_new(table):
        return
    yield Hit(f"UPDATE {table}{ctx.size(table)} without WHERE rewrites every row in one transaction: "
              f"each row stays locked against concurrent writes until it commits")
