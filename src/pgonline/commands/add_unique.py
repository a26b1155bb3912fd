"""``online add-unique`` / ``online add-primary-key``: find duplicates (pre-flight), plan, run."""

from __future__ import annotations

from dataclasses import asdict

from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight as preflight_data
from pgonline.catalog import tables as catalog
from pgonline.connection import connection
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run
from pgonline.engine.plan import Plan
from pgonline.errors import UsageError
from pgonline.registry import kind_of
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.add_primary_key import default_pk_name, plan_add_primary_key
from pgonline.strategies.add_unique import (
    AddUniqueArgs,
    AddUniqueFacts,
    default_unique_name,
    plan_add_unique,
)


async def add_unique(ctx: RunContext, table: str, columns: tuple[str, ...], *,
                     name: str | None = None, primary: bool = False,
                     where: str | None = None) -> ChangeOutcome:
    if where is not None:
        raise UsageError(
            "a UNIQUE constraint cannot have a WHERE clause",
            hint="uniqueness over some rows is a unique partial index: "
            f"`online add-index {table} {' '.join(columns)} --unique --where {where!r}`",
        )
    kind = kind_of(plan_add_primary_key if primary else plan_add_unique)
    qname = QualifiedName.parse(table)
    cols = tuple(parse_identifier(c) for c in columns)
    if not cols:
        raise UsageError("give at least one column")
    given = None if name is None else parse_identifier(name)
    async with connection(ctx.dsn) as conn:
        oid, schema, rel = await catalog.resolve_table(conn, qname)
        target = QualifiedName(schema, rel).quoted()
        default = default_pk_name(rel) if primary else default_unique_name(rel, cols)
        args = AddUniqueArgs(name=given or default, columns=cols)

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            require_columns(facts, cols)
            # Pre-flight, read-only: the duplicate groups the build would trip over.
            dups = await preflight_data.duplicates(
                conn, facts, [sql.Identifier(c) for c in cols], cols)
            ufacts = AddUniqueFacts(
                table=facts, duplicates=dups,
                existing=await index_catalog.existing_relation(conn, schema, args.name, oid),
            )
            return (plan_add_primary_key if primary else plan_add_unique)(ufacts, args)

        return await plan_and_run(ctx, conn, kind, target, asdict(args), make_plan)
