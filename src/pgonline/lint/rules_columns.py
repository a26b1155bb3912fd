"""Column rules: ADD COLUMN defaults, NOT NULL, type changes, renames and drops."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, ObjectType

from pgonline.lint import coltypes
from pgonline.lint.findings import Severity
from pgonline.lint.names import TableRef
from pgonline.lint.registry import Hit, rule
from pgonline.lint.state import LintContext, existing_table_cmds
from pgonline.lint.volatility import SERIAL_TYPES, Volatility, classify


def _constraints(coldef: ast.ColumnDef, kind: ConstrType) -> list[ast.Constraint]:
    return [c for c in coldef.constraints or () if isinstance(c, ast.Constraint) and c.contype == kind]


def _is_null_constant(expr: Any) -> bool:
    return isinstance(expr, ast.A_Const) and bool(expr.isnull)


@rule("add-column-volatile-default", Severity.ERROR,
      summary="ADD COLUMN with a default PostgreSQL must compute per row (volatile; any default "
              "before PostgreSQL 11) rewrites the table under an ACCESS EXCLUSIVE lock.",
      help="add the column without a default, SET DEFAULT for new rows, then backfill existing rows "
           "in batches (`online add-column TABLE COL TYPE --default EXPR` does all three)",
      nodes=(ast.AlterTableStmt,))
def add_column_default(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    catalog = ctx.options.catalog
    volatility_facts = catalog.function_volatility if catalog is not None else None
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_AddColumn):
        coldef = cmd.def_
        col = coldef.colname
        type_name = coldef.typeName.names[-1].sval if coldef.typeName is not None else ""
        where = f"{table}{ctx.size(table)}"
        if type_name in SERIAL_TYPES or _constraints(coldef, ConstrType.CONSTR_IDENTITY):
            yield Hit(f"ADD COLUMN {col} {type_name or 'GENERATED AS IDENTITY'} fills every existing row "
                      f"from a sequence (nextval() is volatile): rewrites {where}", coldef)
            continue
        for generated in _constraints(coldef, ConstrType.CONSTR_GENERATED):
            if generated.generated_kind != "v":  # virtual columns (PostgreSQL 18) store nothing
                yield Hit(f"ADD COLUMN {col} GENERATED ... STORED computes the value for every "
                          f"existing row: rewrites {where}", generated)
        for default in _constraints(coldef, ConstrType.CONSTR_DEFAULT):
            expr = default.raw_expr
            if _is_null_constant(expr):
                continue
            if ctx.pg_major < 11:
                yield Hit(f"ADD COLUMN {col} with a DEFAULT rewrites {where} on PostgreSQL "
                          f"{ctx.pg_major} (before 11 every default is written into every row)", default)
                continue
            found = classify(expr, volatility_facts)
            if found.volatility is Volatility.VOLATILE:
                yield Hit(f"ADD COLUMN {col} DEFAULT {found.name}(...) is volatile: PostgreSQL computes "
                          f"it for every existing row and rewrites {where}", found.culprit)
            elif found.volatility is Volatility.UNKNOWN:
                yield Hit(f"ADD COLUMN {col} DEFAULT calls {found.name}(), whose volatility is unknown; "
                          f"if it is VOLATILE this rewrites {where}", found.culprit,
                          help="pass --dsn so the linter can read pg_proc.provolatile, or make the "
                               "function STABLE/IMMUTABLE if it is",
                          severity=Severity.WARNING)


@rule("adding-required-column", Severity.ERROR,
      summary="ADD COLUMN ... NOT NULL without a DEFAULT fails on any table that has rows.",
      help="add it with a constant DEFAULT (no rewrite since PostgreSQL 11), or add it nullable, "
           "backfill, then enforce NOT NULL through a validated CHECK",
      nodes=(ast.AlterTableStmt,))
def adding_required_column(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_AddColumn):
        coldef = cmd.def_
        not_null = coldef.is_not_null or _constraints(coldef, ConstrType.CONSTR_NOTNULL)
        has_value = (_constraints(coldef, ConstrType.CONSTR_DEFAULT)
                     or _constraints(coldef, ConstrType.CONSTR_IDENTITY)
                     or _constraints(coldef, ConstrType.CONSTR_GENERATED)
                     or (coldef.typeName is not None and coldef.typeName.names[-1].sval in SERIAL_TYPES))
        if not_null and not has_value:
            yield Hit(f"ADD COLUMN {coldef.colname} NOT NULL without a DEFAULT: existing rows of "
                      f"{table}{ctx.size(table)} would be NULL, so the statement fails", coldef)


@rule("set-not-null-without-check", Severity.ERROR,
      summary="SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock unless a validated "
              "CHECK (col IS NOT NULL) already proves it (PostgreSQL 12+).",
      help="ADD CONSTRAINT c CHECK (col IS NOT NULL) NOT VALID; VALIDATE CONSTRAINT c (no write lock); "
           "then SET NOT NULL skips the scan; then DROP CONSTRAINT c",
      nodes=(ast.AlterTableStmt,))
def set_not_null(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_SetNotNull):
        column = cmd.name
        covered, pending = ctx.has_valid_not_null_check(table, column)
        if covered and ctx.pg_major >= 12:
            continue
        message = (f"SET NOT NULL on {table}.{column} scans every row of {table}{ctx.size(table)} "
                   f"under an ACCESS EXCLUSIVE lock")
        if ctx.pg_major < 12:
            yield Hit(message, help=f"PostgreSQL {ctx.pg_major} always scans for SET NOT NULL; keep a "
                                    "validated CHECK (col IS NOT NULL) NOT VALID constraint instead, "
                                    "or upgrade to 12+ where the CHECK lets SET NOT NULL skip the scan")
        elif pending is not None:
            yield Hit(f"{message}: CHECK constraint {pending} is still NOT VALID",
                      help=f"run ALTER TABLE {table} VALIDATE CONSTRAINT {pending} before SET NOT NULL")
        elif ctx.pg_major >= 18:
            yield Hit(message, help="ADD CONSTRAINT c NOT NULL col NOT VALID (or a CHECK (col IS NOT NULL) "
                                    "NOT VALID); VALIDATE CONSTRAINT c (no write lock); the column is "
                                    "then NOT NULL without a blocking scan")
        else:
            yield Hit(message)


@rule("column-type-rewrite", Severity.ERROR,
      summary="ALTER COLUMN ... TYPE rewrites the table and its indexes under an ACCESS EXCLUSIVE lock "
              "unless it is a known binary-compatible widening.",
      help="expand/contract: add a column of the new type, backfill it in batches, switch the "
           "application, drop the old column; for length limits prefer text or a longer varchar "
           "(no rewrite)",
      nodes=(ast.AlterTableStmt,))
def column_type(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_AlterColumnType):
        coldef = cmd.def_
        new = coltypes.from_type_name(coldef.typeName)
        shown = str(new) if new else "the new type"
        where = f"{table}{ctx.size(table)}"
        if coldef.raw_default is not None:
            yield Hit(f"ALTER COLUMN {cmd.name} TYPE {shown} USING ... rewrites {where}", coldef)
            continue
        old_raw = ctx.column_type(table, cmd.name)
        old = coltypes.coerce(old_raw) if old_raw is not None else None
        if old is not None and new is not None:
            if not coltypes.rewrite_free(old, new):
                yield Hit(f"ALTER COLUMN {cmd.name} TYPE {old} -> {new} is not binary-compatible: "
                          f"rewrites {where} and rebuilds its indexes", coldef)
        elif new is not None and new.name in ("text", "varchar") and not new.array:
            yield Hit(f"ALTER COLUMN {cmd.name} TYPE {new} rewrites {where} unless the column is "
                      f"already varchar/text with a shorter limit; its current type is unknown", coldef,
                      help="pass --dsn to check the current type against the catalog",
                      severity=Severity.WARNING)
        else:
            yield Hit(f"ALTER COLUMN {cmd.name} TYPE {shown} most likely rewrites {where} "
                      f"(current type unknown; pass --dsn to check)", coldef)


@rule("rename-column", Severity.ERROR,
      summary="Renaming a column breaks every running application instance that uses the old name.",
      help="expand/contract: add the new column, write both, backfill, move readers, then drop the old "
           "one; or keep the old name visible through a view during the rollout",
      nodes=(ast.RenameStmt,))
def rename_column(node: ast.RenameStmt, ctx: LintContext) -> Iterator[Hit]:
    if node.renameType != ObjectType.OBJECT_COLUMN or node.relation is None:
        return
    table = TableRef.of(node.relation)
    if not ctx.is_new(table):
        yield Hit(f"RENAME COLUMN {table}.{node.subname} TO {node.newname}: queries of the application "
                  f"version still running use {node.subname} and fail at once")


@rule("drop-column", Severity.ERROR,
      summary="Dropping a column breaks application code that still reads or writes it, and loses data.",
      help="first deploy code that no longer uses the column (ORMs cache column lists), then drop it in "
           "a later migration and mark it `-- pgonline:ignore drop-column`",
      nodes=(ast.AlterTableStmt,))
def drop_column(node: ast.AlterTableStmt, ctx: LintContext) -> Iterator[Hit]:
    for table, cmd in existing_table_cmds(node, ctx, AlterTableType.AT_DropColumn):
        yield Hit(f"DROP COLUMN {table}.{cmd.name} fails every query of the running application that "
                  f"still names it, and its data is gone")
