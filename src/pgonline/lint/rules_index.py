"""Index rules: build and drop indexes without blocking writes."""

from __future__ import annotations

from collections.abc import Iterator

from pglast import ast
from pglast.enums import ObjectType

from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext


@rule("require-concurrent-index-creation", Severity.ERROR,
      summary="CREATE INDEX without CONCURRENTLY on an existing table blocks all writes while it builds.",
      help="use CREATE INDEX CONCURRENTLY (outside a transaction block); if it fails, drop the "
           "INVALID index it leaves and retry",
      nodes=(ast.IndexStmt,))
def index_creation(node: ast.IndexStmt, ctx: LintContext) -> Iterator[Hit]:
    table = TableRef.of(node.relation)
    if node.concurrent or ctx.is_new(table):
        return
    kind = "UNIQUE INDEX" if node.unique else "INDEX"
    yield Hit(f"CREATE {kind} on {table}{ctx.size(table)} takes a SHARE lock that blocks writes for "
              f"the whole build")


@rule("require-concurrent-index-deletion", Severity.ERROR,
      summary="DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table.",
      help="use DROP INDEX CONCURRENTLY (outside a transaction block)",
      nodes=(ast.DropStmt,))
def index_deletion(node: ast.DropStmt, ctx: LintContext) -> Iterator[Hit]:
    if node.removeType != ObjectType.OBJECT_INDEX or node.concurrent:
        return
    indexes = [TableRef.from_names(n) for n in node.objects or ()]
    if all(ctx.is_new(index) for index in indexes):
        return
    names = ", ".join(str(index) for index in indexes)
    yield Hit(f"DROP INDEX {names} locks its table against reads and writes (ACCESS EXCLUSIVE) "
              f"and waits behind every running query on it")


def _concurrent(node: object) -> str | None:
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt) and any(
            getattr(p, "defname", None) == "concurrently" for p in node.params or ()):
        return "REINDEX CONCURRENTLY"
    if isinstance(node, ast.AlterTableStmt) and any(
            getattr(c.def_, "concurrent", False) for c in node.cmds or ()):
        return "DETACH PARTITION CONCURRENTLY"
    return None


@rule("concurrently-in-transaction", Severity.ERROR,
      summary="CONCURRENTLY operations cannot run inside a transaction block; the migration fails.",
      help="move the statement out of BEGIN ... COMMIT (run it as its own statement, in its own file "
           "if your runner wraps files in a transaction)",
      nodes=(ast.IndexStmt, ast.DropStmt, ast.ReindexStmt, ast.AlterTableStmt))
def concurrently_in_transaction(node: object, ctx: LintContext) -> Iterator[Hit]:
    what = _concurrent(node)
    if what is not None and ctx.state.in_transaction:
        yield Hit(f"{what} inside BEGIN ... COMMIT fails with "
                  f"'cannot run inside a transaction block'")
