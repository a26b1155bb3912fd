"""``online add-foreign-key``: resolve both tables, count orphans (pre-flight), plan, run."""

from __future__ import annotations

from dataclasses import asdict

from pgonline.catalog import preflight as preflight_data
from pgonline.catalog import tables as catalog
from pgonline.connection import connection
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run
from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError, UsageError
from pgonline.registry import kind_of
from pgonline.sql.identifiers import QualifiedName, parse_identifier
from pgonline.strategies.add_foreign_key import (
    ON_DELETE_ACTIONS,
    AddForeignKeyArgs,
    AddForeignKeyFacts,
    check_shape,
    default_fk_name,
    plan_add_foreign_key,
)


def parse_reference(text: str) -> tuple[QualifiedName, tuple[str, ...]]:
    """``reftable`` or ``schema.reftable(col, col)`` (quotes respected) → name, columns."""
    in_quotes = False
    for i, ch in enumerate(text):
        if ch == '"':
            in_quotes = not in_quotes
        elif ch == "(" and not in_quotes:
            rest = text[i + 1:].rstrip()
            if not rest.endswith(")"):
                raise UsageError(f"--references {text!r}: expected REFTABLE(COL, ...)")
            return QualifiedName.parse(text[:i].strip()), _split_columns(rest[:-1], text)
    return QualifiedName.parse(text.strip()), ()


def _split_columns(inner: str, text: str) -> tuple[str, ...]:
    parts: list[str] = []
    buf: list[str] = []
    in_quotes = False
    for ch in inner:
        if ch == '"':
            in_quotes = not in_quotes
        if ch == "," and not in_quotes:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    parts.append("".join(buf))
    if not any(p.strip() for p in parts):
        raise UsageError(f"--references {text!r}: empty column list")
    return tuple(parse_identifier(p.strip()) for p in parts)


async def add_foreign_key(ctx: RunContext, table: str, columns: tuple[str, ...], *,
                          references: str, name: str | None = None,
                          on_delete: str | None = None) -> ChangeOutcome:
    qname = QualifiedName.parse(table)
    cols = tuple(parse_identifier(c) for c in columns)
    if not cols:
        raise UsageError("give at least one referencing column")
    ref_name, ref_cols = parse_reference(references)
    action = None if on_delete is None else " ".join(on_delete.lower().split())
    if action is not None and action not in ON_DELETE_ACTIONS:
        raise UsageError(f"--on-delete must be one of: {', '.join(ON_DELETE_ACTIONS)}")
    fk_name = None if name is None else parse_identifier(name)
    async with connection(ctx.dsn) as conn:
        _, schema, rel = await catalog.resolve_table(conn, qname)
        _, ref_schema, ref_rel = await catalog.resolve_table(conn, ref_name)
        target = QualifiedName(schema, rel).quoted()
        ref_target = QualifiedName(ref_schema, ref_rel)
        if not ref_cols:
            ref_facts = await catalog.table_facts(conn, ref_target)
            if not ref_facts.primary_key:
                raise CatalogError(f"{ref_facts.display} has no primary key",
                                   hint="name the referenced columns: --references "
                                   "REFTABLE(COL, ...)")
            ref_cols = ref_facts.primary_key
        args = AddForeignKeyArgs(
            name=fk_name or default_fk_name(rel, cols), columns=cols,
            ref_table=ref_target.quoted(), ref_columns=ref_cols, on_delete=action,
        )

        async def make_plan() -> Plan:
            facts = await catalog.table_facts(conn, QualifiedName(schema, rel))
            ref = await catalog.table_facts(conn, ref_target)
            check_shape(facts, ref, args)
            # Pre-flight, read-only: rows VALIDATE would reject.
            found = await preflight_data.orphans(conn, facts, args.columns, ref, args.ref_columns)
            return plan_add_foreign_key(
                AddForeignKeyFacts(table=facts, referenced=ref, violations=found), args)

        return await plan_and_run(ctx, conn, kind_of(plan_add_foreign_key), target, asdict(args), make_plan)
