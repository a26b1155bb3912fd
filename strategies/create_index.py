"""create-index: a migration's CREATE INDEX that add-index cannot spell, built CONCURRENTLY.

Problem: a plain ``CREATE INDEX`` holds SHARE on the table for the whole
build, so every INSERT, UPDATE and DELETE waits for it.  ``online add-index``
spells plain column and expression keys; a migration may use what it does
not (operator classes, collations, INCLUDE, NULLS NOT DISTINCT, storage
parameters).

What we do instead: the migration runner deparses the statement with
``CONCURRENTLY`` (and PostgreSQL's default name when it had none), and this
plan runs exactly that text as one non-transactional step:

* ``done_if``: a valid index of that name on the table, so a crash after the
  build but before the journal update is harmless;
* ``cleanup_if``/``cleanup_sql``: an INVALID one is what an interrupted or
  failed build leaves; it is dropped concurrently before the next attempt;
* undo drops the index concurrently.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgonline.strategies._ddl import drop_index_concurrently, index_exists_query
from pgonline.strategies._partitioned_index import partitioned_index_steps

from pgonline.catalog.partitions import PartitionTree
from pgonline.engine.plan import LockLevel, Phase, Plan, Step
from pgonline.registry import strategy


@dataclass(frozen=True)
class CreateIndexArgs:
    statement: str  # the CREATE INDEX CONCURRENTLY text, deparsed from the migration's tree
    index: str  # the name it builds (given, or the one PostgreSQL would derive)
    unique: bool = False
    if_not_exists: bool = False


@dataclass(frozen=True)
class CreateIndexFacts:
    table: str  # the resolved table, quoted
    schema: str  # the table's (and so the index's) schema
    # A partitioned table: its name, its partitions, and the migration's statement
    # deparsed for the root (ON ONLY) and for each partition in tree order.
    name: str = ""
    partitions: PartitionTree | None = None
    statements: tuple[str, ...] = ()


@strategy("create-index")
def plan_create_index(facts: CreateIndexFacts, args: CreateIndexArgs) -> Plan:
    """One non-transactional CREATE INDEX CONCURRENTLY step that converges on re-runs.

    On a partitioned table, the statement built piece by piece as add-index
    does (strategies/_partitioned_index.py).
    """
    if facts.partitions is not None:
        steps = partitioned_index_steps(facts.schema, facts.name, facts.partitions, args.index,
                                        facts.statements,
                                        kind="unique index" if args.unique else "index")
        return Plan("create-index", facts.table, {"statement": args.statement}, tuple(steps),
                    notes=("partitioned: the migration's definition is built CONCURRENTLY on each "
                           "leaf partition and assembled with ATTACH PARTITION",))
    drop = drop_index_concurrently(facts.schema, args.index)
    step = Step(
        id="create-index", phase=Phase.EXPAND, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        transactional=False, description="build the index concurrently", sql=args.statement,
        done_if=index_exists_query(facts.table, facts.schema, args.index, valid=True),
        cleanup_if=index_exists_query(facts.table, facts.schema, args.index, valid=False),
        cleanup_sql=drop, undo_sql=drop,
        why_safe="CONCURRENTLY holds SHARE UPDATE EXCLUSIVE: reads and writes continue during "
        "the build" + (" (uniqueness is checked on the existing rows by the build)"
                       if args.unique else ""),
    )
    notes = ["run CONCURRENTLY as one journaled step: a plain CREATE INDEX would block writes "
             "for the whole build, and the online add-index command cannot spell this definition"]
    if args.if_not_exists:
        notes.append("IF NOT EXISTS kept: an existing index of that name is left alone")
    # The statement determines the rest of the arguments; it alone has always
    # been the job's arguments, so the fingerprint of a journaled job still matches.
    return Plan("create-index", facts.table, {"statement": args.statement}, (step,),
                notes=tuple(notes))
