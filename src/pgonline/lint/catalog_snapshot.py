"""Catalog facts the linter uses when it is given a DSN.

All facts are read once, before any rule runs, so the rules stay pure
functions of (statement, file state, snapshot).  Every query is read-only and
takes parameters; table names are resolved with ``to_regclass`` using the
session's search_path, exactly as the migration's own statements would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import NullTestType
from pglast.parser import ParseError

from pgonline.lint.names import TableRef

# estimate_rows() counts tables up to this size; bigger unanalyzed ones are not scanned.
_COUNT_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class RelationFacts:
    schema: str
    name: str
    rows: int | None  # None: never analyzed and too big to count
    bytes: int
    columns: Mapping[str, str]  # column -> format_type()
    not_null: frozenset[str]
    # Columns covered by a validated CHECK (col IS NOT NULL): SET NOT NULL on
    # them skips the full-table scan (PostgreSQL 12+).
    checked_not_null: frozenset[str]

    def size_text(self) -> str:
        rows = "rows unknown (never analyzed)" if self.rows is None else format_rows(self.rows)
        return f"{rows}, {format_bytes(self.bytes)}"


@dataclass(frozen=True)
class CatalogSnapshot:
    server_version_num: int
    relations: Mapping[TableRef, RelationFacts] = field(default_factory=dict)
    # proname -> the most volatile provolatile among its overloads ('i' < 's' < 'v').
    function_volatility: Mapping[str, str] = field(default_factory=dict)
    # References the database resolved to no table.  They stay unknown: matching
    # them to another spelling (``events`` to ``app.events``) would make a
    # file's findings depend on which other files were linted with it.
    missing: frozenset[TableRef] = frozenset()

    def relation(self, ref: TableRef) -> RelationFacts | None:
        found = self.relations.get(ref)
        if found is not None or ref in self.missing:
            return found
        return next((facts for key, facts in self.relations.items() if key.matches(ref)), None)


def format_rows(rows: int) -> str:
    if rows < 1000:
        return f"{rows} row" + ("" if rows == 1 else "s")
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if rows >= size:
            return f"~{rows / size:.1f}{unit} rows".replace(".0", "")
    return f"{rows} rows"  # pragma: no cover - unreachable


def format_bytes(nbytes: int) -> str:
    """Like ``pg_size_pretty`` (1024-based, kB/MB/GB/TB)."""
    value = float(nbytes)
    for unit in ("bytes", "kB", "MB", "GB"):
        if value < 10 * 1024:
            return f"{value:.0f} {unit}"
        value /= 1024
    return f"{value:.0f} TB"


def not_null_check_column(definition: str) -> str | None:
    """The column of ``CHECK ((col IS NOT NULL))`` (as ``pg_get_constraintdef`` prints it)."""
    try:
        stmts = parse_sql(f"ALTER TABLE t ADD {definition}")
    except ParseError:
        return None
    stmt: Any = stmts[0].stmt
    cmd = stmt.cmds[0]
    constraint = cmd.def_
    if not isinstance(constraint, ast.Constraint) or constraint.raw_expr is None:
        return None
    return is_not_null_test(constraint.raw_expr)


def is_not_null_test(expr: Any) -> str | None:
    """``col IS NOT NULL`` -> ``col``."""
    if not isinstance(expr, ast.NullTest):
        return None
    test: Any = expr
    arg: Any = test.arg
    if test.nulltesttype != NullTestType.IS_NOT_NULL or not isinstance(arg, ast.ColumnRef):
        return None
    fields: Any = arg.fields
    if len(fields) == 1 and isinstance(fields[0], ast.String):
        return str(fields[0].sval)
    return None


async def take_snapshot(dsn: str, tables: Iterable[TableRef], functions: Iterable[str]) -> CatalogSnapshot:
    # The rules import this module for its facts; psycopg loads only when a
    # snapshot is taken (--dsn), so linting files alone skips its import.
    from pgonline.connection import connect

    conn = await connect(dsn)
    try:
        # Lint never writes; make that a server-side guarantee too.
        await conn.execute("SET default_transaction_read_only = on")
        await conn.execute("SET statement_timeout = '30s'")
        relations: dict[TableRef, RelationFacts] = {}
        missing: set[TableRef] = set()
        for ref in set(tables):
            facts = await _relation(conn, ref)
            if facts is not None:
                relations[ref] = facts
            else:
                missing.add(ref)
        volatility: dict[str, str] = {}
        names = sorted(set(functions))
        if names:
            cur = await conn.execute(
                "SELECT proname, max(provolatile::text) FROM pg_proc"
                " WHERE proname = ANY(%s) GROUP BY proname",
                [names],
            )
            volatility = {str(name): str(vol) for name, vol in await cur.fetchall()}
        return CatalogSnapshot(conn.info.server_version, relations, volatility, frozenset(missing))
    finally:
        await conn.close()


async def _relation(conn: Any, ref: TableRef) -> RelationFacts | None:
    from pgonline.catalog.tables import estimate_rows

    cur = await conn.execute(
        """
        SELECT c.oid, n.nspname, c.relname, pg_table_size(c.oid), c.reltuples::bigint,
               pg_relation_size(c.oid)
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')
        """,
        [ref.regclass_text()],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    oid, schema, name, nbytes, reltuples, heap_bytes = row
    rows: int | None
    if int(heap_bytes or 0) <= _COUNT_LIMIT or int(reltuples) >= 0:
        # Small tables are counted exactly (reltuples is often stale on them);
        # big ones use the planner's estimate and are never scanned.
        rows = max(await estimate_rows(conn, str(schema), str(name)), 0)
    else:
        rows = None
    cur = await conn.execute(
        """
        SELECT attname, format_type(atttypid, atttypmod), attnotnull
          FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped
        """,
        [oid],
    )
    columns: dict[str, str] = {}
    not_null: set[str] = set()
    for attname, typ, notnull in await cur.fetchall():
        columns[str(attname)] = str(typ)
        if notnull:
            not_null.add(str(attname))
    cur = await conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s AND contype = 'c' AND convalidated",
        [oid],
    )
    checked = {col for (definition,) in await cur.fetchall()
               if (col := not_null_check_column(str(definition))) is not None}
    return RelationFacts(str(schema), str(name), rows, int(nbytes or 0), columns,
                         frozenset(not_null), frozenset(checked))
