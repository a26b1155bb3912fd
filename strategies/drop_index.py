"""drop-index: remove an index without blocking reads or writes.

Problem: a plain ``DROP INDEX`` takes ACCESS EXCLUSIVE on the *table*; while
it waits for that lock behind any long query, every new query on the table
queues behind it.

What we do instead: ``DROP INDEX CONCURRENTLY IF EXISTS``, which takes SHARE
UPDATE EXCLUSIVE on the table, marks the index invalid, waits for queries
that might use it, and only then removes it.  It runs outside a transaction;
``IF EXISTS`` plus a ``done_if`` probe make a re-run after an interruption a
no-op once the index is gone.  Indexes that implement a constraint (primary
key, unique, exclusion) are refused: dropping them changes what the schema
enforces, which is a different change (drop the constraint).

Undo recreates the index from ``pg_get_indexdef`` captured at planning time,
with ``CONCURRENTLY``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from pgonline.strategies._ddl import drop_index_concurrently, index_exists_query
from psycopg import sql

from pgonline.catalog import indexes as index_catalog
from pgonline.catalog.facts import DropIndexFacts
from pgonline.connection import Conn
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Change, Command, strategy
from pgonline.sql.identifiers import QualifiedName
from pgonline.sql.render import render

_CONSTRAINT_KINDS = {"p": "PRIMARY KEY", "u": "UNIQUE", "x": "EXCLUSION"}


@dataclass(frozen=True)
class DropIndexArgs:
    index: str  # as the user named it (quoted); resolved when the plan is made


def recreate_concurrently(definition: str) -> str:
    """``CREATE [UNIQUE] INDEX name ON ...`` → the same with ``CONCURRENTLY IF NOT EXISTS``.

    ``definition`` is the server's own ``pg_get_indexdef`` text, which always
    starts with one of these two prefixes.
    """
    for prefix in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
        if definition.startswith(prefix):
            return f"{prefix}CONCURRENTLY IF NOT EXISTS {definition[len(prefix):]}"
    raise ValueError(f"unexpected index definition: {definition!r}")  # pragma: no cover


def parse(name: str) -> Change[DropIndexArgs]:
    index = QualifiedName.parse(name)
    # The index name as given (not resolved) is the command's argument: an
    # interrupted run whose index is already gone must still find its job.
    return Change(index, DropIndexArgs(index=index.quoted()))


async def gather(conn: Conn, index: QualifiedName, args: DropIndexArgs) -> DropIndexFacts:
    return await index_catalog.index_by_name(conn, index)


COMMAND = Command(
    parse=parse, gather=gather, on_index=True,
    help="Drop index NAME with DROP INDEX CONCURRENTLY (refused for constraint indexes).",
    params=(Arg("name"),),
    replaces="`DROP INDEX`",
    does="`DROP INDEX CONCURRENTLY`; refuses constraint-backing indexes",
)


@strategy("drop-index", command=COMMAND)
def plan_drop_index(facts: DropIndexFacts, args: DropIndexArgs) -> Plan:
    ident = render(sql.Identifier(facts.schema, facts.name))
    if facts.constraint is not None and facts.constraint_type == "f":
        cname = render(sql.Identifier(facts.constraint))
        raise CatalogError(
            f"foreign key {cname} depends on index {ident} (it enforces the referenced key)",
            hint="drop or re-point that foreign key first",
        )
    if facts.constraint is not None:
        kind = _CONSTRAINT_KINDS.get(facts.constraint_type or "", "a")
        cname = render(sql.Identifier(facts.constraint))
        raise CatalogError(
            f"index {ident} implements the {kind} constraint {cname} on {facts.table}",
            hint=f"dropping it would drop what the constraint enforces; if that is intended, "
            f"run `ALTER TABLE {facts.table} DROP CONSTRAINT {cname}`",
        )
    if facts.partitioned:
        raise CatalogError(
            f"{ident} is a partitioned index; PostgreSQL cannot DROP it CONCURRENTLY",
            hint="a plain DROP INDEX locks the parent and every partition ACCESS EXCLUSIVE; "
            "run it in a quiet moment with a short lock_timeout",
        )
    probe = render(sql.SQL("SELECT to_regclass({}) IS NULL").format(sql.Literal(ident)))
    step = Step(
        id="drop-index", phase=Phase.CONTRACT, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        transactional=False, description=f"drop index {ident} CONCURRENTLY (outside a transaction)",
        sql=drop_index_concurrently(facts.schema, facts.name), done_if=probe,
        undo_sql=recreate_concurrently(facts.definition),
        undo_cleanup_if=index_exists_query(facts.table, facts.schema, facts.name, valid=False),
        undo_cleanup_sql=drop_index_concurrently(facts.schema, facts.name),
        why_safe="CONCURRENTLY takes SHARE UPDATE EXCLUSIVE on the table (reads and writes "
        "continue) and waits for queries using the index before removing it",
    )
    return Plan("drop-index", facts.table, asdict(args), (step,),
                notes=(f"index definition, kept for rollback: {facts.definition}",))
