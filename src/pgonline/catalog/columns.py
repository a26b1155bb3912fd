"""Catalog queries about one column: details, dependents, indexes, type probes.

Read-only, parameterised queries (names are never formatted into SQL); the
two probes that need the server's own type machinery run inside transactions
that are always rolled back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgonline.catalog.column_details import (
    ColumnDetails,
    ColumnIndex,
    Dependent,
    NewTypeFacts,
    OwnedSequence,
    ReferencingKey,
)
from pgonline.catalog.facts import TableFacts
from pgonline.catalog.suggestions import missing_column
from pgonline.connection import Conn
from pgonline.errors import CatalogError, UsageError
from pgonline.sql import row_expression
from pgonline.sql.render import render
from pgonline.sql.server_errors import user_sql_error

_DEPENDENTS = """
SELECT d.deptype::text AS deptype, pg_describe_object(d.classid, d.objid, d.objsubid) AS description,
       d.classid::regclass::text AS catalog,
       cl.relkind::text AS relkind,
       co.contype::text AS contype, co.conrelid = d.refobjid AS same_table,
       rw.ev_class::regclass::text AS view, rw.ev_class = d.refobjid AS own_rule,
       ad.adnum AS adnum,
       (SELECT attname FROM pg_attribute
         WHERE attrelid = ad.adrelid AND attnum = ad.adnum) AS default_of,
       (SELECT relkind::text FROM pg_class WHERE oid = rw.ev_class) AS view_kind
  FROM pg_depend d
  LEFT JOIN pg_class cl ON d.classid = 'pg_class'::regclass AND cl.oid = d.objid
  LEFT JOIN pg_constraint co ON d.classid = 'pg_constraint'::regclass AND co.oid = d.objid
  LEFT JOIN pg_rewrite rw ON d.classid = 'pg_rewrite'::regclass AND rw.oid = d.objid
  LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
 WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(rel)s AND d.refobjsubid = %(attnum)s
   AND d.deptype IN ('n', 'a', 'i')
 ORDER BY 2
"""

# Foreign keys referencing the column, each with its column paired to ours.
# Keys cloned onto partitions (conparentid <> 0) follow their parent's.
_REFERENCING_KEYS = """
SELECT co.conname AS constraint, n.nspname AS schema, c.relname AS table,
       co.conrelid::bigint AS table_oid, a.attname AS column,
       pg_get_constraintdef(co.oid) AS definition, co.convalidated AS validated,
       c.relkind::text AS relkind
  FROM pg_constraint co
  JOIN pg_class c ON c.oid = co.conrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN LATERAL unnest(co.confkey, co.conkey) AS k(refnum, attnum)
  JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.attnum
 WHERE co.contype = 'f' AND co.confrelid = %(rel)s AND k.refnum = %(attnum)s
   AND co.conparentid = 0
 ORDER BY n.nspname, c.relname, a.attname, co.conname
"""

_CONSTRAINT_KINDS = {"p": "primary key", "u": "unique constraint", "c": "check constraint",
                     "x": "exclusion constraint", "t": "constraint trigger"}
_OTHER_CATALOGS = {"pg_trigger": "trigger", "pg_policy": "policy",
                   "pg_statistic_ext": "statistics", "pg_publication_rel": "publication"}


def _classify(row: dict[str, Any], attnum: int) -> Dependent | None:
    """Name what a pg_depend row is, or None for the column's own parts."""
    catalog, deptype, desc = row["catalog"], row["deptype"], row["description"]
    kind = "other"
    if catalog == "pg_class":
        relkind = row["relkind"]
        if relkind in ("i", "I"):
            kind = "index"
        elif relkind == "S":
            kind = "identity sequence" if deptype == "i" else "owned sequence"
    elif catalog == "pg_constraint":
        contype = row["contype"]
        if contype == "n":
            return None  # the column's own NOT NULL (PostgreSQL >= 18 catalogs it)
        if contype == "f":
            # A foreign key depends normally on the columns it references and
            # automatically on its own columns.
            kind = "referencing foreign key" if deptype == "n" else "foreign key"
        else:
            kind = _CONSTRAINT_KINDS.get(contype, "other")
    elif catalog == "pg_rewrite":
        if row["own_rule"]:
            kind = "rule"
        else:
            word = "materialized view" if row["view_kind"] == "m" else "view"
            kind, desc = "view", f"{word} {row['view']}"
    elif catalog == "pg_attrdef":
        if row["adnum"] == attnum:
            return None  # the column's own default
        # Another column's expression uses this one: only a generation
        # expression can (a DEFAULT cannot reference columns).
        kind = "generated column"
        desc = f"generated column {render(sql.Identifier(row['default_of']))}"
    else:
        kind = _OTHER_CATALOGS.get(catalog, "other")
    return Dependent(kind=kind, description=desc, deptype=deptype)


async def column_details(conn: Conn, table: TableFacts, column: str) -> ColumnDetails:
    """Everything the column strategies need about ``table.column``, or CatalogError."""
    col = table.column(column)
    if col is None:
        raise missing_column(table, column)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            """
            SELECT a.attnum, a.atttypid::bigint AS type_oid, a.atttypmod AS typmod,
                   a.attidentity::text AS identity, a.attgenerated::text AS generated,
                   CASE WHEN a.attcollation <> t.typcollation THEN cn.nspname END AS coll_schema,
                   CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS coll_name,
                   c.relkind::text AS relkind
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_type t ON t.oid = a.atttypid
              LEFT JOIN pg_collation co ON co.oid = a.attcollation
              LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
             WHERE a.attrelid = %s AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped
            """,
            [table.oid, column],
        )
        a = await cur.fetchone()
        assert a is not None
        await cur.execute(_DEPENDENTS, {"rel": table.oid, "attnum": a["attnum"]})
        seen: dict[str, Dependent] = {}
        for row in await cur.fetchall():
            dep = _classify(row, a["attnum"])
            if dep is not None and dep.description not in seen:
                seen[dep.description] = dep
        await cur.execute(
            """
            SELECT n.nspname AS schema, i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition,
                   x.indisvalid AS valid, co.conname AS constraint, co.contype::text AS constraint_type,
                   coalesce(co.condeferrable, false) AS deferrable
              FROM pg_index x
              JOIN pg_class i ON i.oid = x.indexrelid
              JOIN pg_namespace n ON n.oid = i.relnamespace
              LEFT JOIN pg_constraint co ON co.conindid = x.indexrelid AND co.conrelid = x.indrelid
                                        AND co.contype IN ('p', 'u', 'x')
             WHERE x.indrelid = %(rel)s
               AND (%(attnum)s = ANY (x.indkey::int2[])
                    OR EXISTS (SELECT 1 FROM pg_depend d
                                WHERE d.classid = 'pg_class'::regclass AND d.objid = x.indexrelid
                                  AND d.refclassid = 'pg_class'::regclass
                                  AND d.refobjid = %(rel)s AND d.refobjsubid = %(attnum)s))
             ORDER BY i.relname
            """,
            {"rel": table.oid, "attnum": a["attnum"]},
        )
        indexes = tuple(ColumnIndex(**r) for r in await cur.fetchall())
        await cur.execute(
            """
            SELECT n.nspname AS schema, s.relname AS name, format_type(q.seqtypid, NULL) AS type,
                   d.deptype = 'i' AS identity
              FROM pg_depend d
              JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
              JOIN pg_namespace n ON n.oid = s.relnamespace
              JOIN pg_sequence q ON q.seqrelid = s.oid
             WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
               AND d.refobjid = %s AND d.refobjsubid = %s AND d.deptype IN ('a', 'i')
             LIMIT 1
            """,
            [table.oid, a["attnum"]],
        )
        seq = await cur.fetchone()
        # With an empty search_path, pg_get_constraintdef qualifies the
        # referenced table (as pg_dump does): the definition is journaled and
        # may run in a session whose search_path differs.
        await cur.execute("SELECT current_setting('search_path') AS path")
        path = await cur.fetchone()
        assert path is not None
        await cur.execute("SELECT set_config('search_path', '', false)")
        try:
            await cur.execute(_REFERENCING_KEYS, {"rel": table.oid, "attnum": a["attnum"]})
            referenced_by = tuple(ReferencingKey(**r) for r in await cur.fetchall())
        finally:
            await cur.execute("SELECT set_config('search_path', %s, false)", [path["path"]])
    coll = (a["coll_schema"], a["coll_name"]) if a["coll_name"] is not None else None
    in_key = a["relkind"] == "p" and await _in_partition_key(conn, table.oid, column)
    return ColumnDetails(
        column=col, attnum=int(a["attnum"]), type_oid=int(a["type_oid"]), typmod=int(a["typmod"]),
        identity=a["identity"] or "", generated=a["generated"] or "", collation=coll,
        has_equality=await _has_equality(conn, col.type), relkind=a["relkind"],
        in_partition_key=in_key,
        dependents=tuple(seen.values()), indexes=indexes,
        sequence=OwnedSequence(**seq) if seq is not None else None,
        referenced_by=referenced_by,
    )


async def _in_partition_key(conn: Conn, table_oid: int, column: str) -> bool:
    """``column`` is in the partition key (a column or in an expression) of the partitioned
    table or of any of its partitioned partitions.

    PostgreSQL makes a partition key column internally dependent on its table
    (column → table), and the table internally dependent on each column a key
    expression uses (table → column); no other internal dependency links a
    table and its own column like that.
    """
    cur = await conn.execute(
        """
        SELECT EXISTS (
          SELECT 1 FROM pg_partition_tree(%s::oid) t
            JOIN pg_attribute a ON a.attrelid = t.relid AND a.attname = %s
            JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = t.relid
                            AND d.refclassid = 'pg_class'::regclass AND d.refobjid = t.relid
                            AND d.deptype = 'i'
                            AND ((d.objsubid = a.attnum AND d.refobjsubid = 0)
                                 OR (d.objsubid = 0 AND d.refobjsubid = a.attnum)))
        """, [table_oid, column])
    row = await cur.fetchone()
    return bool(row and row[0])


async def refuse_generated_targets(conn: Conn, table: TableFacts, columns: Sequence[str],
                                   verb: str) -> None:
    """CatalogError when one of ``columns`` is a generated column (its value is computed).

    PostgreSQL accepts only ``SET col = DEFAULT`` for them, so an UPDATE of
    one would fail in its first batch: refusing at planning creates no job.
    """
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attname = ANY(%s)"
        " AND attgenerated <> '' AND NOT attisdropped ORDER BY attnum",
        [table.oid, list(columns)],
    )
    names = [render(sql.Identifier(str(r[0]))) for r in await cur.fetchall()]
    if names:
        raise CatalogError(
            f"cannot {verb} {', '.join(names)} of {table.display}: generated column(s), "
            "whose values PostgreSQL computes from the generation expression",
            hint="set the columns the expression reads instead",
        )


async def _has_equality(conn: Conn, type_display: str) -> bool:
    # format_type output is the server's own quoting of the type name.
    probe = sql.SQL("SELECT NULL::{0} IS DISTINCT FROM NULL::{0}").format(sql.SQL(type_display))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(probe)
    except psycopg.errors.UndefinedFunction:
        return False
    return True


def _server_message(exc: psycopg.Error) -> str:
    diag = exc.diag
    return (diag.message_primary or str(exc).strip()) + (f" ({diag.sqlstate})" if diag.sqlstate else "")


async def new_type_facts(conn: Conn, old: ColumnDetails, type_sql: str) -> NewTypeFacts:
    """Resolve ``type_sql`` on the server (with its typmod) and relate it to the old type."""
    create = sql.SQL("CREATE TEMP TABLE pgonline_type_probe (c {}) ON COMMIT DROP").format(
        sql.SQL(type_sql))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(create)
            cur = await conn.execute(
                """
                SELECT a.atttypid::bigint, a.atttypmod, format_type(a.atttypid, a.atttypmod),
                       t.typcollation <> 0
                  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                 WHERE a.attrelid = 'pg_temp.pgonline_type_probe'::regclass AND a.attname = 'c'
                """
            )
            row = await cur.fetchone()
    except psycopg.Error as exc:
        if user_sql_error(exc, unsupported=True):
            raise UsageError(f"bad type {type_sql!r}: {_server_message(exc)}") from None
        raise
    assert row is not None
    oid, typmod, display, collatable = int(row[0]), int(row[1]), str(row[2]), bool(row[3])
    cur = await conn.execute(
        "SELECT %s::oid = %s::oid OR EXISTS (SELECT 1 FROM pg_cast WHERE castsource = %s"
        " AND casttarget = %s AND castmethod = 'b')",
        [old.type_oid, oid, old.type_oid, oid],
    )
    coercible = await cur.fetchone()
    return NewTypeFacts(display=display, oid=oid, typmod=typmod, collatable=collatable,
                        binary_coercible=bool(coercible and coercible[0]))


async def check_default_fits(conn: Conn, old: ColumnDetails, type_display: str) -> None:
    """Refuse now a default that cannot move to the new type (not in the cut-over later).

    The column's current default is attached to a probe column of the new
    type, in a transaction that is rolled back.
    """
    if old.column.default is None:
        return
    create = sql.SQL("CREATE TEMP TABLE pgonline_type_probe (c {}) ON COMMIT DROP").format(
        sql.SQL(type_display))
    set_default = sql.SQL(
        "ALTER TABLE pg_temp.pgonline_type_probe ALTER COLUMN c SET DEFAULT ({})"
    ).format(sql.SQL(old.column.default))
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(create)
            await conn.execute(set_default)
    except psycopg.Error as exc:
        if user_sql_error(exc):
            raise CatalogError(
                f"the default of column {render(sql.Identifier(old.name))} "
                f"({old.column.default}) cannot be used for type {type_display}: "
                f"{_server_message(exc)}",
                hint="change or drop the default first (online change-type moves it as is)",
            ) from None
        raise


async def check_conversion(conn: Conn, table: TableFacts, column: str, expr: str,
                           type_display: str, what: str) -> None:
    """Plan (never run) storing ``<expr>`` of every row into a column of the new type.

    ``INSERT ... SELECT`` applies *assignment* coercion, exactly what
    ``ALTER COLUMN ... TYPE`` does: an explicit cast would silently truncate
    (``'abcdef'::varchar(3)``) where PostgreSQL's own change raises an error,
    and conversions without an assignment cast need ``--using``, as in
    PostgreSQL.  The probe column carries the real column's name so the
    server's message names it.
    """
    create = sql.SQL("CREATE TEMP TABLE pgonline_conversion_probe ({} {}) ON COMMIT DROP").format(
        sql.Identifier(column), sql.SQL(type_display))
    query = sql.SQL("EXPLAIN INSERT INTO pg_temp.pgonline_conversion_probe SELECT ({}) FROM {}"
                    ).format(sql.SQL(expr), table.ident)
    try:
        async with conn.transaction(force_rollback=True):
            await conn.execute(create)
            await conn.execute(query)
    except psycopg.Error as exc:
        if user_sql_error(exc):
            raise UsageError(f"{what}: {_server_message(exc)}",
                             hint="give the conversion explicitly with --using EXPR") from None
        raise


async def check_per_row_expression(conn: Conn, table: TableFacts, expr: str, column: str,
                                   type_sql: str | None = None) -> None:
    """Refuse, with the server's reason, an expression that cannot fill one row at a time.

    The fill trigger computes ``expr`` for each row the application writes, so
    it must be what an ``UPDATE t SET column = (expr)`` accepts: no aggregate,
    no window function, no set-returning function (the server's own rules,
    not a list of names), with assignment coercion to the column's type.  The
    ``UPDATE`` is only planned (``EXPLAIN ... WHERE false``), and against a
    temporary copy created ``LIKE`` the table, aliased to the table's name so
    qualified references resolve: the real table is only read for its
    definition (ACCESS SHARE), never locked for writing.  ``type_sql`` adds the
    column to the copy first (add-column: it does not exist yet).
    """
    await _refuse_generated_inputs(conn, table, expr)
    probe = sql.Identifier("pg_temp", "pgonline_row_probe")
    stmts: list[sql.Composed] = [
        sql.SQL("CREATE TEMP TABLE pgonline_row_probe (LIKE {}) ON COMMIT DROP").format(table.ident),
    ]
    if type_sql is not None:
        stmts.append(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            probe, sql.Identifier(column), sql.SQL(type_sql)))
    stmts.append(sql.SQL("EXPLAIN UPDATE {} AS {} SET {} = ({}) WHERE false").format(
        probe, sql.Identifier(table.name), sql.Identifier(column), sql.SQL(expr)))
    try:
        async with conn.transaction(force_rollback=True):
            for stmt in stmts:
                await conn.execute(stmt)
    except psycopg.Error as exc:
        if exc.sqlstate in _NOT_PER_ROW:
            raise UsageError(
                f"backfill expression {expr!r} cannot be evaluated per row: "
                f"{_server_message(exc)}",
                hint="the value of each row must come from that row's own columns "
                "(no aggregate, window or set-returning function)",
            ) from None
        if user_sql_error(exc, unsupported=True):
            raise UsageError(f"bad backfill expression: {_server_message(exc)}") from None
        raise


# What the server says of an UPDATE ... SET c = EXPR that needs more than one row:
# an aggregate (grouping_error), a window function (windowing_error), a
# set-returning function (feature_not_supported).
_NOT_PER_ROW = frozenset({"42803", "42P20", "0A000"})


async def _refuse_generated_inputs(conn: Conn, table: TableFacts, expr: str) -> None:
    """A BEFORE trigger sees stored generated columns before they are computed (NULL), so
    the fill trigger would compute another value than the backfill: refuse such inputs."""
    if conn.info.server_version < 120000:
        return  # no generated columns before PostgreSQL 12
    cur = await conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0"
        " AND NOT attisdropped AND attgenerated <> '' ORDER BY attnum", [table.oid])
    generated = [str(r[0]) for r in await cur.fetchall()]
    used = row_expression.referenced_columns(expr, schema=table.schema, table=table.name)
    bad = [g for g in generated if g in used or "*" in used]
    if bad:
        raise UsageError(
            f"backfill expression {expr!r} cannot be evaluated per row: it reads the generated "
            f"column {render(sql.Identifier(bad[0]))}, which a BEFORE trigger sees "
            "before it is computed",
            hint="use the generated column's own expression over the columns it is built from",
        )
