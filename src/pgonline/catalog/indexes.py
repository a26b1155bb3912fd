"""Catalog look-ups about indexes and index names (read-only, parameterised).

Used by the index and constraint commands to gather what their strategies
need: whether a name is taken (and by what), which access methods exist,
what constraint an index implements, and a server-side dry build of an
index definition on an empty temporary copy of the table.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from pgonline.catalog.facts import DropIndexFacts, ExistingRelation, TableFacts
from pgonline.catalog.suggestions import relation_hint
from pgonline.connection import Conn
from pgonline.errors import CatalogError, UsageError
from pgonline.sql.identifiers import QualifiedName
from pgonline.sql.render import render
from pgonline.sql.server_errors import user_sql_error


async def is_partitioned(conn: Conn, table_oid: int) -> bool:
    cur = await conn.execute("SELECT relkind = 'p' FROM pg_class WHERE oid = %s", [table_oid])
    row = await cur.fetchone()
    return bool(row and row[0])


async def require_access_method(conn: Conn, name: str) -> None:
    """Refuse ``--using`` values that are not index access methods of this server."""
    cur = await conn.execute("SELECT amname FROM pg_am WHERE amtype = 'i' ORDER BY amname")
    methods = [str(r[0]) for r in await cur.fetchall()]
    if name not in methods:
        raise UsageError(f"unknown index access method {name!r}",
                         hint=f"this server has: {', '.join(methods)}")


async def existing_relation(conn: Conn, schema: str, name: str,
                            table_oid: int) -> ExistingRelation | None:
    """What, if anything, already uses ``schema.name`` (relation names are per schema)."""
    cur = await conn.execute(
        """
        SELECT c.relkind::text, coalesce(x.indrelid = %s, false), coalesce(x.indisvalid, false),
               c.oid
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_index x ON x.indexrelid = c.oid
         WHERE n.nspname = %s AND c.relname = %s
        """,
        [table_oid, schema, name],
    )
    row = await cur.fetchone()
    if row is None:
        return None
    kind, on_table, valid = str(row[0]), bool(row[1]), bool(row[2])
    building = None
    if kind in ("i", "I") and not valid and conn.info.server_version >= 120000:
        building = await _building_pid(conn, int(row[3]))
    return ExistingRelation(kind=kind, on_table=on_table, valid=valid, building_pid=building)


async def _building_pid(conn: Conn, index_oid: int) -> int | None:
    """The backend whose concurrent build of that index is in progress, if any."""
    cur = await conn.execute(
        "SELECT pid FROM pg_stat_progress_create_index"
        " WHERE index_relid = %s AND pid <> pg_backend_pid() LIMIT 1",
        [index_oid],
    )
    row = await cur.fetchone()
    return int(row[0]) if row else None


async def table_of_index(conn: Conn, name: QualifiedName) -> str | None:
    """The table of index ``name`` (search_path rules), spelt as :func:`index_by_name` does.

    None if there is no such index.
    """
    cur = await conn.execute(
        """SELECT n.nspname, t.relname
             FROM pg_index x
             JOIN pg_class t ON t.oid = x.indrelid
             JOIN pg_namespace n ON n.oid = t.relnamespace
            WHERE x.indexrelid = to_regclass(%s)""",
        [name.quoted()],
    )
    row = await cur.fetchone()
    return None if row is None else render(sql.Identifier(str(row[0]), str(row[1])))


_INDEX_BY_NAME = """
        SELECT n.nspname, c.relname, c.relkind::text, tn.nspname, t.relname,
               pg_get_indexdef(c.oid),
               (SELECT con.conname FROM pg_constraint con
                 WHERE con.conindid = c.oid AND con.contype IN ('p', 'u', 'x', 'f')
                 ORDER BY con.contype = 'f', con.conname LIMIT 1),
               (SELECT con.contype::text FROM pg_constraint con
                 WHERE con.conindid = c.oid AND con.contype IN ('p', 'u', 'x', 'f')
                 ORDER BY con.contype = 'f', con.conname LIMIT 1)
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          LEFT JOIN pg_index x ON x.indexrelid = c.oid
          LEFT JOIN pg_class t ON t.oid = x.indrelid
          LEFT JOIN pg_namespace tn ON tn.oid = t.relnamespace
         WHERE c.oid = to_regclass(%s)
        """


async def probe_index(conn: Conn, table: TableFacts, keys: Sequence[sql.Composable], *,
                      unique: bool, using: str | None, where: str | None) -> None:
    """Let the server vet an index definition by building it on an empty temporary copy.

    ``CREATE TEMP TABLE ... (LIKE t)`` copies the columns and their types; the
    index built on it goes through every check the real build will (columns,
    operator classes for the access method, IMMUTABLE expressions and
    predicate) in milliseconds, and the transaction is always rolled back.
    Only ACCESS SHARE is taken on the real table, under a short lock_timeout.
    """
    probe = sql.Identifier("pg_temp", "pgonline_index_probe")
    create = sql.SQL("CREATE {}INDEX ON {}{} ({})").format(
        sql.SQL("UNIQUE " if unique else ""), probe,
        sql.SQL("") if using is None else sql.SQL(" USING {}").format(sql.Identifier(using)),
        sql.SQL(", ").join(keys),
    )
    if where is not None:
        create = sql.SQL("{} WHERE ({})").format(create, sql.SQL(where))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute("SET LOCAL lock_timeout = '5s'")
            await conn.execute(sql.SQL("CREATE TEMP TABLE {} (LIKE {}) ON COMMIT DROP").format(
                sql.Identifier("pgonline_index_probe"), table.ident))
            await conn.execute(create)
    except psycopg.Error as exc:
        if user_sql_error(exc, unsupported=True):
            msg = exc.diag.message_primary or str(exc).strip()
            raise UsageError(f"bad index definition: {msg} ({exc.sqlstate})") from None
        raise


async def index_by_name(conn: Conn, name: QualifiedName) -> DropIndexFacts:
    """Resolve an index name (search_path rules) and what depends on it."""
    try:
        cur = await conn.execute(_INDEX_BY_NAME, [name.quoted()])
    except psycopg.errors.InternalError_:
        # XX000: pg_get_indexdef reads the catalog caches, not our snapshot, so an
        # index another session drops while we read it fails with "cache lookup
        # failed" instead of being absent.  Gone is gone: say so plainly.
        if await table_of_index(conn, name) is None:
            raise CatalogError(f"index {name} does not exist") from None
        raise
    row = await cur.fetchone()
    if row is None:
        raise CatalogError(f"index {name} does not exist",
                           hint=await relation_hint(conn, name, ("i", "I")))
    schema, rel, kind, tschema, tname, definition, con, contype = row
    if kind not in ("i", "I"):
        raise CatalogError(f"{name} is not an index (relkind {kind!r})")
    return DropIndexFacts(
        schema=str(schema), name=str(rel),
        table=render(sql.Identifier(str(tschema), str(tname))),
        definition=str(definition), partitioned=kind == "I",
        constraint=None if con is None else str(con),
        constraint_type=None if contype is None else str(contype),
    )
