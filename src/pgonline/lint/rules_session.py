"""Session rules: lock_timeout around blocking DDL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast

from pgonline.lint.findings import Severity
from pgonline.lint.locks import existing_blocking_locks
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext

_STATEMENTS = (ast.AlterTableStmt, ast.IndexStmt, ast.CreateStmt, ast.DropStmt, ast.RenameStmt,
               ast.CreateTrigStmt, ast.TruncateStmt, ast.ClusterStmt, ast.VacuumStmt)


@rule("missing-lock-timeout", Severity.ERROR,
      summary="A statement locks an existing table against application traffic, and the file never "
              "set lock_timeout before it.",
      help="start the file with SET lock_timeout = '2s' (and retry on failure): a DDL statement waiting "
           "for its lock queues every later query on the table behind it",
      nodes=_STATEMENTS)
def missing_lock_timeout(node: Any, ctx: LintContext) -> Iterator[Hit]:
    if ctx.state.lock_timeout or "missing-lock-timeout" in ctx.state.reported:
        return
    locks = existing_blocking_locks(node, ctx)
    if not locks:
        return
    # Reported once per file, at the first statement that needs it.
    ctx.state.reported.add("missing-lock-timeout")
    lock = locks[0]
    # DROP INDEX names the index, not the table it locks.
    target = f"{lock} on the table of index {lock.ref}" if lock.of_index else f"{lock} on {lock.ref}"
    subject = "its table" if lock.of_index else str(lock.ref)
    # Queries wait behind a queued lock request only if they conflict with it:
    # plain SELECTs pass anything weaker than ACCESS EXCLUSIVE.
    blocked = "reads and writes" if lock.blocks_reads else "writes"
    yield Hit(f"no lock_timeout is set before this statement takes {target}; while it waits "
              f"behind a long query, all {blocked} of {subject} queue behind it")
