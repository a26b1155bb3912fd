"""Catalog introspection: turns the live database into :mod:`pgonline.catalog.facts`.

All queries here are read-only and take parameters, never formatted names.
The one exception that executes DDL, :func:`probe_default`, does so on a
temporary table inside a transaction that is always rolled back.
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgonline.catalog.facts import (
    ColumnFacts,
    ConstraintFacts,
    ExpressionFacts,
    IndexFacts,
    ServerFacts,
    TableFacts,
)
from pgonline.connection import Conn
from pgonline.errors import CatalogError, UsageError
from pgonline.sql.identifiers import QualifiedName
from pgonline.sql.render import render
from pgonline.sql.server_errors import user_sql_error


async def server_facts(conn: Conn) -> ServerFacts:
    return ServerFacts(version_num=conn.info.server_version)


async def resolve_table(conn: Conn, name: QualifiedName) -> tuple[int, str, str]:
    """Return (oid, schema, name) of an ordinary or partitioned table, or raise."""
    cur = await conn.execute(
        """
        SELECT c.oid, n.nspname, c.relname, c.relkind
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.oid = to_regclass(%s)
        """,
        [name.quoted()],
    )
    row = await cur.fetchone()
    if row is None:
        from pgonline.catalog.suggestions import relation_hint

        raise CatalogError(f"table {name} does not exist",
                           hint=await relation_hint(conn, name, ("r", "p")))
    oid, schema, relname, relkind = row
    if relkind not in ("r", "p"):
        raise CatalogError(f"{name} is not a table (relkind {relkind!r})")
    return int(oid), str(schema), str(relname)


async def table_facts(conn: Conn, name: QualifiedName) -> TableFacts:
    oid, schema, relname = await resolve_table(conn, name)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type,
                   -- PostgreSQL >= 18: an invalid (NOT VALID) not-null constraint sets
                   -- attnotnull but proves nothing about existing rows yet.
                   a.attnotnull AND NOT EXISTS (
                       SELECT 1 FROM pg_constraint k
                        WHERE k.conrelid = a.attrelid AND k.contype = 'n'
                          AND NOT k.convalidated AND k.conkey[1] = a.attnum) AS not_null,
                   pg_get_expr(d.adbin, d.adrelid) AS default
              FROM pg_attribute a
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum
            """,
            [oid],
        )
        columns = tuple(ColumnFacts(**r) for r in await cur.fetchall())
        await cur.execute(
            """
            SELECT n.nspname AS schema, i.relname AS name, x.indisunique AS unique,
                   x.indisprimary AS primary, x.indisvalid AS valid,
                   x.indexprs IS NOT NULL AS has_expressions,
                   pg_get_expr(x.indpred, x.indrelid) AS predicate,
                   pg_get_indexdef(x.indexrelid) AS definition,
                   ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, ord)
                           JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                          ORDER BY k.ord) AS columns
              FROM pg_index x
              JOIN pg_class i ON i.oid = x.indexrelid
              JOIN pg_namespace n ON n.oid = i.relnamespace
             WHERE x.indrelid = %s
             ORDER BY i.relname
            """,
            [oid],
        )
        indexes = tuple(
            IndexFacts(**{**r, "columns": tuple(r["columns"])}) for r in await cur.fetchall()
        )
        await cur.execute(
            """
            SELECT c.conname AS name, c.contype AS type, c.convalidated AS validated,
                   pg_get_constraintdef(c.oid) AS definition, i.relname AS index_name
              FROM pg_constraint c LEFT JOIN pg_class i ON i.oid = c.conindid
             WHERE c.conrelid = %s
             ORDER BY c.conname
            """,
            [oid],
        )
        constraints = tuple(ConstraintFacts(**r) for r in await cur.fetchall())
        await cur.execute(
            """
            SELECT greatest(c.reltuples, 0)::bigint AS estimated_rows,
                   pg_table_size(c.oid) AS size_bytes
              FROM pg_class c WHERE c.oid = %s
            """,
            [oid],
        )
        size = await cur.fetchone()
    assert size is not None
    pk = next((ix.columns for ix in indexes if ix.primary), ())
    return TableFacts(
        schema=schema,
        name=relname,
        oid=oid,
        columns=columns,
        primary_key=pk,
        estimated_rows=int(size["estimated_rows"]),
        size_bytes=int(size["size_bytes"]),
        indexes=indexes,
        constraints=constraints,
    )


async def estimate_rows(conn: Conn, schema: str, table: str) -> int:
    """A row estimate that is cheap on big tables and exact on small ones.

    ``reltuples`` is -1 (never analyzed) or stale on freshly loaded tables; a
    count is only taken when the table is small enough to count in a blink.
    """
    cur = await conn.execute(
        """
        SELECT c.reltuples::bigint, pg_relation_size(c.oid)
          FROM pg_class c WHERE c.oid = to_regclass(%s)
        """,
        [render(sql.Identifier(schema, table))],
    )
    row = await cur.fetchone()
    if row is None:
        return 0
    reltuples, nbytes = int(row[0]), int(row[1])
    if reltuples >= 0 and nbytes > 64 * 1024 * 1024:
        return reltuples
    cur = await conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, table))
    )
    counted = await cur.fetchone()
    return int(counted[0]) if counted else 0


def _user_error(what: str, exc: psycopg.Error) -> UsageError:
    diag = exc.diag
    msg = diag.message_primary or str(exc).strip()
    return UsageError(f"{what}: {msg}" + (f" ({diag.sqlstate})" if diag.sqlstate else ""))


async def probe_default(conn: Conn, type_sql: str, default_sql: str | None) -> ExpressionFacts | None:
    """Ask the server whether ``DEFAULT <expr>`` for ``<type>`` avoids a table rewrite.

    On an empty temporary table we run the same ``ADD COLUMN`` the user asked
    for and read back ``pg_attribute.atthasmissing``: PostgreSQL sets it exactly
    when it stored the default as a "missing value" instead of planning a
    rewrite, i.e. when the expression contains no volatile function.  The
    transaction is rolled back, and the probe also validates the type and
    expression with the server's own error messages.
    """
    ddl = sql.SQL("ALTER TABLE pg_temp.pgonline_probe ADD COLUMN c {}{}").format(
        sql.SQL(type_sql),
        sql.SQL("") if default_sql is None else sql.SQL(" DEFAULT ({})").format(sql.SQL(default_sql)),
    )
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute("CREATE TEMP TABLE pgonline_probe () ON COMMIT DROP")
            await conn.execute(ddl)
            cur = await conn.execute(
                """
                SELECT a.atthasmissing FROM pg_attribute a
                 WHERE a.attrelid = 'pg_temp.pgonline_probe'::regclass AND a.attname = 'c'
                """
            )
            row = await cur.fetchone()
    except psycopg.errors.UndefinedObject as exc:
        raise _user_error("bad type", exc) from None
    except (psycopg.errors.SyntaxError, psycopg.errors.DataError,
            psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFunction,
            psycopg.errors.DatatypeMismatch, psycopg.errors.InvalidTextRepresentation,
            psycopg.errors.UndefinedColumn, psycopg.errors.InvalidColumnReference,
            psycopg.errors.IntegrityConstraintViolation) as exc:
        what = "bad type" if default_sql is None else "bad type or default"
        raise _user_error(what, exc) from None
    if default_sql is None:
        return None
    assert row is not None
    return ExpressionFacts(text=default_sql, volatile=not bool(row[0]))


async def check_row_expression(conn: Conn, table: TableFacts, expr: str, type_sql: str) -> None:
    """Plan (never run) ``SELECT (<expr>)::<type> FROM table`` to validate a backfill expression."""
    query = sql.SQL("EXPLAIN SELECT ({})::{} FROM {}").format(
        sql.SQL(expr), sql.SQL(type_sql), table.ident
    )
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(query)
    except psycopg.errors.Error as exc:
        if user_sql_error(exc):
            raise _user_error("bad backfill expression", exc) from None
        raise


async def check_predicate(conn: Conn, table: TableFacts, predicate: str) -> None:
    """Plan (never run) ``SELECT 1 FROM table WHERE <predicate>``."""
    query = sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE ({})").format(table.ident, sql.SQL(predicate))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(query)
    except psycopg.errors.Error as exc:
        if user_sql_error(exc):
            raise _user_error("bad WHERE predicate", exc) from None
        raise


async def has_rows(conn: Conn, table: TableFacts) -> bool:
    cur = await conn.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(table.ident))
    row = await cur.fetchone()
    return bool(row and row[0])
