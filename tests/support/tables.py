"""Test tables shaped like the demo's ``users``."""

from __future__ import annotations

from typing import Any

import psycopg


def create_users(db: psycopg.Connection[Any], rows: int, *, table: str = "users") -> None:
    db.execute(
        f"""
        CREATE TABLE {table} (
            id bigserial PRIMARY KEY,
            email text,
            hits integer NOT NULL DEFAULT 0,
            created_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    db.execute(
        f"INSERT INTO {table} (email) SELECT 'user' || g || '@example.com'"  # noqa: S608
        f" FROM generate_series(1, %s) g",
        [rows],
    )
    db.execute(f"ANALYZE {table}")


def columns(db: psycopg.Connection[Any], table: str) -> dict[str, tuple[str, bool, str | None]]:
    """name -> (type, not_null, default) for a table."""
    cur = db.execute(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
        """,
        [table],
    )
    return {r[0]: (r[1], r[2], r[3]) for r in cur.fetchall()}


def schema_snapshot(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Every user column, constraint and index outside system schemas and our journal."""
    cur = db.execute(
        """
        SELECT 'col', c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull::text
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline', 'pg_toast')
           AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
        UNION ALL
        SELECT 'con', c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),
               c.convalidated::text
          FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline')
        UNION ALL
        SELECT 'idx', i.indrelid::regclass::text, ic.relname, pg_get_indexdef(i.indexrelid),
               i.indisvalid::text
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
          JOIN pg_namespace n ON n.oid = ic.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline', 'pg_toast')
         ORDER BY 1, 2, 3
        """
    )
    return cur.fetchall()


def not_null_step_ids(db: psycopg.Connection[Any]) -> list[str]:
    """The steps that make a column NOT NULL on this server: count the NULLs left, then
    PostgreSQL >= 18 adds the NOT NULL constraint NOT VALID and validates it; older ones
    go through a helper CHECK."""
    if db.info.server_version >= 180000:
        return ["check-nulls", "add-not-null", "validate-not-null"]
    return ["check-nulls", "add-check", "validate-check", "set-not-null", "drop-check"]
