"""``online add-index``: validate the definition, gather facts, plan, run."""

from __future__ import annotations

from dataclasses import asdict

from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog import preflight as preflight_data
from pgonline.catalog import tables as catalog
from pgonline.connection import connection
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run
from pgonline.engine.plan import Plan
from pgonline.registry import kind_of
from pgonline.sql import expressions as sqltext
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies._ddl import require_columns
from pgonline.strategies.add_index import (
    AddIndexArgs,
    AddIndexFacts,
    default_index_name,
    plan_add_index,
)


async def add_index(ctx: RunContext, table: str, columns: tuple[str, ...], *,
                    name: str | None = None, unique: bool = False, where: str | None = None,
                    using: str | None = None, expressions: tuple[str, ...] = ()) -> ChangeOutcome:
    # Names become identifiers and SQL fragments must parse as exactly one
    # expression before we connect.
    qname = QualifiedName.parse(table)
    cols = tuple(parse_identifier(c) for c in columns)
    exprs = tuple(sqltext.expression(e, "index expression") for e in expressions)
    pred = None if where is None else sqltext.expression(where, "WHERE predicate")
    method = None if using is None else parse_identifier(using)
    index_name = None if name is None else parse_identifier(name)
    async with connection(ctx.dsn) as conn:
        oid, schema, rel = await catalog.resolve_table(conn, qname)
        target = QualifiedName(schema, rel).quoted()
        args = AddIndexArgs(
            name=index_name or default_index_name(rel, cols, exprs), columns=cols,
            expressions=exprs, unique=unique, where=pred, using=method,
        )

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            if cols:
                require_columns(facts, cols)
            if method is not None:
                await index_catalog.require_access_method(conn, method)
            if pred is not None:
                await catalog.check_predicate(conn, facts, pred)
            keys: list[sql.Composable] = [sql.Identifier(c) for c in cols]
            keys += [sql.SQL("({})").format(sql.SQL(e)) for e in exprs]
            if keys:
                # The server vets the whole definition (opclasses, IMMUTABLE
                # expressions) on an empty temporary copy of the table.
                await index_catalog.probe_index(conn, facts, keys, unique=unique, using=method,
                                                where=pred)
            dups = None
            if unique and keys:
                dups = await preflight_data.duplicates(conn, facts, keys, [*cols, *exprs], pred)
            return plan_add_index(
                AddIndexFacts(
                    table=facts, partitioned=await index_catalog.is_partitioned(conn, oid),
                    existing=await index_catalog.existing_relation(conn, schema, args.name, oid),
                    duplicates=dups,
                ),
                args,
            )

        return await plan_and_run(ctx, conn, kind_of(plan_add_index), target, asdict(args), make_plan)
