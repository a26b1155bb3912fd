"""What the linter knows while walking a file: earlier statements and the catalog.

A migration file is a script: whether ``CREATE INDEX`` is dangerous depends on
whether its table was created a few lines earlier (new and empty: fine) or
already exists (locks production traffic).  :class:`FileState` follows the
statements that change those facts; :class:`LintContext` is what a rule sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType, TransactionStmtKind, VariableSetKind

from pgonline.lint.catalog_snapshot import CatalogSnapshot, RelationFacts, is_not_null_test
from pgonline.lint.names import TableRef, contains_ref, without_ref
from pgonline.lint.source import Statement
from pgonline.lint.volatility import function_name


@dataclass
class CheckInfo:
    column: str
    validated: bool


@dataclass
class FileState:
    """What the statements of one file established so far (a new one per file)."""

    # Tables created by this file since its last COMMIT/ROLLBACK (or its start).
    new_tables: set[TableRef] = field(default_factory=set)
    # Indexes built on new tables: dropping them again locks nothing live.
    new_indexes: set[TableRef] = field(default_factory=set)
    in_transaction: bool = False
    lock_timeout_session: bool = False
    lock_timeout_local: bool = False
    # (table, column) -> pglast TypeName, for columns whose type this file set.
    column_types: dict[tuple[TableRef, str], Any] = field(default_factory=dict)
    # table -> constraint name -> CHECK (col IS NOT NULL) / NOT NULL ... NOT VALID
    not_null_checks: dict[TableRef, dict[str, CheckInfo]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)

    @property
    def lock_timeout(self) -> bool:
        return self.lock_timeout_session or (self.in_transaction and self.lock_timeout_local)


@dataclass(frozen=True)
class LintOptions:
    pg_major: int
    catalog: CatalogSnapshot | None = None


@dataclass
class LintContext:
    options: LintOptions
    state: FileState
    stmt: Statement

    @property
    def pg_major(self) -> int:
        return self.options.pg_major

    def is_new(self, ref: TableRef) -> bool:
        """Created earlier in this file and transaction (so empty and unused by the application).

        Never true for a table an earlier file created: each file is linted as
        it runs, usually long after the files before it.
        """
        return contains_ref(self.state.new_tables, ref) or contains_ref(self.state.new_indexes, ref)

    def relation(self, ref: TableRef) -> RelationFacts | None:
        catalog = self.options.catalog
        return catalog.relation(ref) if catalog is not None else None

    def size(self, ref: TableRef) -> str:
        """`` (~1.2M rows, 180 MB)`` when the catalog knows the table, else ``""``.

        Messages place it right after the table's name: ``rewrites users (~1.2M rows, 180 MB)``.
        """
        facts = self.relation(ref)
        return f" ({facts.size_text()})" if facts is not None else ""

    def column_type(self, ref: TableRef, column: str) -> Any:
        """The column's current type as a pglast TypeName, or a format_type() string, or None."""
        for (table, col), type_name in reversed(self.state.column_types.items()):
            if col == column and table.matches(ref):
                return type_name
        facts = self.relation(ref)
        if facts is not None and column in facts.columns:
            return facts.columns[column]
        return None

    def has_valid_not_null_check(self, ref: TableRef, column: str) -> tuple[bool, str | None]:
        """(covered, name of an unvalidated check to VALIDATE first)."""
        pending = None
        for table, checks in self.state.not_null_checks.items():
            if not table.matches(ref):
                continue
            for name, info in checks.items():
                if info.column == column:
                    if info.validated:
                        return True, None
                    pending = name
        facts = self.relation(ref)
        if facts is not None and (column in facts.checked_not_null or column in facts.not_null):
            return True, None
        return False, pending


def existing_table_cmds(node: ast.AlterTableStmt, ctx: LintContext,
                         *subtypes: AlterTableType) -> Iterator[tuple[TableRef, Any]]:
    """ALTER TABLE subcommands of the given kinds on a table this migration did not create."""
    if node.objtype != ObjectType.OBJECT_TABLE or node.relation is None:
        return
    table = TableRef.of(node.relation)
    if ctx.is_new(table):
        return
    for cmd in node.cmds or ():
        if cmd.subtype in subtypes:
            yield table, cmd


def _int_setting_is_zero(args: tuple[Any, ...] | None) -> bool:
    if not args:
        return True
    value = args[0].val if isinstance(args[0], ast.A_Const) else None
    if isinstance(value, ast.Integer):
        return int(value.ival or 0) == 0
    if isinstance(value, ast.String):
        return (value.sval or "").strip() in ("0", "0ms", "0s", "")
    return False


def _set_lock_timeout(state: FileState, local: bool, on: bool) -> None:
    if local:
        state.lock_timeout_local = on
    else:
        state.lock_timeout_session = on
        state.lock_timeout_local = on


def _apply_set_config(state: FileState, node: ast.SelectStmt) -> None:
    for target in node.targetList or ():
        call = getattr(target, "val", None)
        if not isinstance(call, ast.FuncCall) or function_name(call) != "set_config":
            continue
        args = call.args or ()
        if len(args) == 3 and isinstance(args[0], ast.A_Const) and isinstance(args[0].val, ast.String) \
                and args[0].val.sval == "lock_timeout":
            local = isinstance(args[2], ast.A_Const) and isinstance(args[2].val, ast.Boolean) \
                and bool(args[2].val.boolval)
            _set_lock_timeout(state, local, not _int_setting_is_zero((args[1],)))


def _record_table_constraint(state: FileState, table: TableRef, con: Any) -> None:
    if con.contype == ConstrType.CONSTR_CHECK:
        column = is_not_null_test(con.raw_expr)
    elif con.contype == ConstrType.CONSTR_NOTNULL and con.keys:
        column = con.keys[0].sval
    else:
        return
    if column is not None:
        name = con.conname or f"<{column} not null>"
        state.not_null_checks.setdefault(table, {})[name] = CheckInfo(column, not con.skip_validation)


def _apply_alter(state: FileState, node: ast.AlterTableStmt) -> None:
    if node.objtype != ObjectType.OBJECT_TABLE or node.relation is None:
        return
    table = TableRef.of(node.relation)
    for cmd in node.cmds or ():
        if cmd.subtype == AlterTableType.AT_AddColumn and isinstance(cmd.def_, ast.ColumnDef):
            state.column_types[(table, str(cmd.def_.colname))] = cmd.def_.typeName
        elif cmd.subtype == AlterTableType.AT_AlterColumnType and isinstance(cmd.def_, ast.ColumnDef):
            state.column_types[(table, str(cmd.name))] = cmd.def_.typeName
        elif cmd.subtype == AlterTableType.AT_AddConstraint and isinstance(cmd.def_, ast.Constraint):
            _record_table_constraint(state, table, cmd.def_)
        elif cmd.subtype == AlterTableType.AT_ValidateConstraint:
            for key, checks in state.not_null_checks.items():
                if key.matches(table) and cmd.name in checks:
                    checks[cmd.name].validated = True


def _end_newness(state: FileState) -> None:
    """A transaction ended: what it created is committed (or rolled back), no longer new.

    After COMMIT every session sees the tables and the application may use
    them, so a later transaction of the file meets them as existing tables,
    as a later file does.  What is known about their columns and constraints
    stays true and is kept.  (``online migrate up`` removes a file's own
    BEGIN/COMMIT and runs it as one transaction; psql, golang-migrate and most
    runners commit where the file says, which is what is linted.)
    """
    state.new_tables.clear()
    state.new_indexes.clear()


def apply(state: FileState, stmt: Statement, catalog: CatalogSnapshot | None) -> None:
    """Advance the state past ``stmt`` (after the rules have looked at it)."""
    node = stmt.node
    if isinstance(node, ast.CreateStmt):
        ref = TableRef.of(node.relation)
        # CREATE TABLE IF NOT EXISTS on a table the database already has is a
        # no-op: the table stays a live, populated one.
        exists = node.if_not_exists and catalog is not None and catalog.relation(ref) is not None
        if not exists:
            state.new_tables.add(ref)
            for elt in node.tableElts or ():
                if isinstance(elt, ast.ColumnDef):
                    state.column_types[(ref, str(elt.colname))] = elt.typeName
    elif isinstance(node, ast.IndexStmt) and node.idxname and node.relation is not None:
        table = TableRef.of(node.relation)
        if contains_ref(state.new_tables, table):
            state.new_indexes.add(TableRef(table.schema, str(node.idxname)))
    elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
        state.new_tables.add(TableRef.of(node.into.rel))
    elif isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        for names in node.objects or ():
            state.new_tables = without_ref(state.new_tables, TableRef.from_names(names))
    elif isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_TABLE:
        old = TableRef.of(node.relation)
        if contains_ref(state.new_tables, old):
            state.new_tables = without_ref(state.new_tables, old)
            state.new_tables.add(TableRef(old.schema, str(node.newname)))
    elif isinstance(node, ast.AlterTableStmt):
        _apply_alter(state, node)
    elif isinstance(node, ast.TransactionStmt):
        if node.kind in (TransactionStmtKind.TRANS_STMT_BEGIN, TransactionStmtKind.TRANS_STMT_START):
            state.in_transaction = True
        elif node.kind in (TransactionStmtKind.TRANS_STMT_COMMIT, TransactionStmtKind.TRANS_STMT_ROLLBACK,
                           TransactionStmtKind.TRANS_STMT_PREPARE):
            state.in_transaction = False
            state.lock_timeout_local = False
            _end_newness(state)
    elif isinstance(node, ast.VariableSetStmt) and node.name == "lock_timeout":
        if node.kind == VariableSetKind.VAR_SET_VALUE:
            _set_lock_timeout(state, bool(node.is_local), not _int_setting_is_zero(node.args))
        elif node.kind in (VariableSetKind.VAR_SET_DEFAULT, VariableSetKind.VAR_RESET):
            _set_lock_timeout(state, bool(node.is_local), False)
    elif isinstance(node, ast.VariableSetStmt) and node.kind == VariableSetKind.VAR_RESET_ALL:
        _set_lock_timeout(state, False, False)
    elif isinstance(node, ast.SelectStmt):
        _apply_set_config(state, node)
