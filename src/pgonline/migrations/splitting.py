"""Splitting a migration file into statements with PostgreSQL's own parser.

pglast (libpg_query) is the server's grammar, so a dollar-quoted PL/pgSQL
body, a ``;`` inside a string or a comment never splits a statement the way a
regular expression or ``psql``-less shell loop would.  Every statement keeps
its character offset in the file, so server errors can be reported as
``file:line:column``.

Two properties of each statement decide how a file runs:

* *transaction control* written in the file (``BEGIN``/``COMMIT``, as in the
  seed's migrations) is removed: the runner wraps the file in its own
  transaction, which also holds the tracking row, so "applied" and "recorded"
  commit together;
* *cannot run in a transaction block* (``CREATE INDEX CONCURRENTLY``,
  ``VACUUM``, ``CREATE DATABASE`` ...) makes the whole file run statement by
  statement in autocommit mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pglast import ast, enums, parse_sql
from pglast.parser import ParseError

from pgonline.errors import MigrationError


@dataclass(frozen=True)
class Statement:
    """One top-level statement of a file: its exact text and where it starts."""

    text: str
    offset: int  # character offset of the first token in the file
    node: ast.Node
    no_transaction: str | None = None  # why it cannot run in a transaction block

    @property
    def kind(self) -> str:
        return type(self.node).__name__


@dataclass(frozen=True)
class ParsedFile:
    path: Path
    source: str
    statements: tuple[Statement, ...]
    # ``BEGIN ISOLATION LEVEL ...`` options of a leading BEGIN, re-applied as
    # ``SET TRANSACTION`` inside our own transaction.
    set_transaction: str | None = None

    @property
    def transactional(self) -> bool:
        return not any(s.no_transaction for s in self.statements)

    def position(self, offset: int) -> str:
        """``path:line:column`` (1-based) of a character offset in the file."""
        line, col = line_column(self.source, offset)
        return f"{self.path.name}:{line}:{col}"


def line_column(text: str, offset: int) -> tuple[int, int]:
    offset = max(0, min(offset, len(text)))
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


def _has_concurrently(params: tuple[ast.Node, ...] | None) -> bool:
    return any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params or ())


def no_transaction_reason(node: ast.Node, server_major: int | None = None) -> str | None:
    """Why ``node`` cannot run inside a transaction block, or None if it can."""
    if isinstance(node, ast.IndexStmt) and node.concurrent:
        return "CREATE INDEX CONCURRENTLY"
    if isinstance(node, ast.DropStmt) and node.concurrent:
        return "DROP INDEX CONCURRENTLY"
    if isinstance(node, ast.ReindexStmt):
        if _has_concurrently(node.params):
            return "REINDEX CONCURRENTLY"
        if node.kind in (enums.ReindexObjectType.REINDEX_OBJECT_SYSTEM,
                         enums.ReindexObjectType.REINDEX_OBJECT_DATABASE):
            return "REINDEX SYSTEM/DATABASE"
    if isinstance(node, ast.VacuumStmt) and node.is_vacuumcmd:
        return "VACUUM"
    # Before PostgreSQL 12 ALTER TYPE ... ADD VALUE is refused in a
    # transaction block; when the server version is unknown (validation
    # without a connection) we assume an old server, the safe side.
    if isinstance(node, ast.AlterEnumStmt) and node.oldVal is None and (
            server_major is None or server_major < 12):
        return "ALTER TYPE ... ADD VALUE (PostgreSQL < 12)"
    if isinstance(node, ast.CreatedbStmt | ast.DropdbStmt):
        return "CREATE/DROP DATABASE"
    if isinstance(node, ast.CreateTableSpaceStmt | ast.DropTableSpaceStmt):
        return "CREATE/DROP TABLESPACE"
    if isinstance(node, ast.AlterSystemStmt):
        return "ALTER SYSTEM"
    if isinstance(node, ast.ClusterStmt) and node.relation is None:
        return "CLUSTER without a table"
    if isinstance(node, ast.CreateSubscriptionStmt | ast.DropSubscriptionStmt):
        return "CREATE/DROP SUBSCRIPTION"
    if isinstance(node, ast.AlterTableStmt):
        for cmd in node.cmds or ():
            part = getattr(cmd, "def_", None)
            if isinstance(part, ast.PartitionCmd) and part.concurrent:
                return "DETACH PARTITION ... CONCURRENTLY"
    return None


_TX = enums.TransactionStmtKind
_STRIPPED = (_TX.TRANS_STMT_BEGIN, _TX.TRANS_STMT_START, _TX.TRANS_STMT_COMMIT)
_REFUSED = {
    _TX.TRANS_STMT_ROLLBACK: "ROLLBACK",
    _TX.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    _TX.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    _TX.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}


def _set_transaction(options: tuple[ast.Node, ...] | None) -> str | None:
    """Render a BEGIN's options as the equivalent ``SET TRANSACTION``."""
    parts: list[str] = []
    for opt in options or ():
        if not isinstance(opt, ast.DefElem) or not isinstance(opt.arg, ast.A_Const):
            continue
        value = opt.arg.val
        if opt.defname == "transaction_isolation" and isinstance(value, ast.String):
            level = str(value.sval).upper()
            if level in ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED"):
                parts.append(f"ISOLATION LEVEL {level}")
        elif opt.defname == "transaction_read_only" and isinstance(value, ast.Integer):
            parts.append("READ ONLY" if value.ival else "READ WRITE")
        elif opt.defname == "transaction_deferrable" and isinstance(value, ast.Integer):
            parts.append("DEFERRABLE" if value.ival else "NOT DEFERRABLE")
    return "SET TRANSACTION " + ", ".join(parts) if parts else None


def parse_text(source: str, path: Path, *, server_major: int | None = None) -> ParsedFile:
    """Split ``source`` into statements; raise MigrationError with file:line:column on bad SQL."""
    try:
        raws = parse_sql(source)
    except ParseError as exc:
        message = exc.args[0] if exc.args else str(exc)
        # pglast reports the error cursor as a 0-based character offset.
        cursor = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else 0
        line, col = line_column(source, cursor)
        raise MigrationError(
            f"{path.name}:{line}:{col}: syntax error: {message}",
            hint=f"fix {path} and run again; nothing was applied from it",
        ) from None
    statements: list[Statement] = []
    set_tx: str | None = None
    for raw in raws:
        node = raw.stmt
        if node is None:
            continue
        start = raw.stmt_location or 0
        end = len(source) if not raw.stmt_len else start + raw.stmt_len
        text = source[start:end].strip()
        if isinstance(node, ast.TransactionStmt):
            if node.kind in _STRIPPED:
                # The file's own BEGIN/COMMIT: dropped, the runner provides the
                # transaction (and commits the tracking row inside it).
                if node.kind is not _TX.TRANS_STMT_COMMIT and not statements and set_tx is None:
                    set_tx = _set_transaction(node.options)
                continue
            if node.kind in _REFUSED:
                line, col = line_column(source, start)
                raise MigrationError(
                    f"{path.name}:{line}:{col}: {_REFUSED[node.kind]} is not allowed in a migration",
                    hint="a migration runs in the runner's transaction; remove the statement",
                )
        statements.append(Statement(text=text, offset=start, node=node,
                                    no_transaction=no_transaction_reason(node, server_major)))
    return ParsedFile(path=path, source=source, statements=tuple(statements), set_transaction=set_tx)


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MigrationError(f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise MigrationError(f"cannot read {path}: {exc.strerror}") from None


def parse_file(path: Path, *, server_major: int | None = None) -> ParsedFile:
    return parse_text(read_source(path), path, server_major=server_major)
