"""Backfill steps, one per leaf partition on a partitioned table (pure, no I/O).

A partitioned table holds no rows itself: its leaves do.  Walking the
parent in key order would make every batch an ordered merge over every
partition's index; walking each leaf on its own keeps each batch a range
scan of one index, and gives each leaf its own step and so its own
checkpoint: ``online resume`` continues in the leaf it stopped in, after
the leaves already done.  Each leaf has the parent's key (a primary key or
unique index on a partitioned table is one per partition, and contains the
partition key), so the same key columns serve every leaf.

A row the application moves to another partition (an UPDATE of the
partition key) is deleted from one leaf and inserted into the other: a fill
trigger on the parent (cloned to every partition) fills it on that insert.
"""

from __future__ import annotations

from pgonline.catalog.facts import TableFacts
from pgonline.catalog.partitions import PartitionTree
from pgonline.engine.plan import BackfillSpec, LockLevel, Phase, Step


def backfill_steps(t: TableFacts, tree: PartitionTree | None, *, key: tuple[str, ...],
                   set_sql: str, where_sql: str | None, description: str, why_safe: str,
                   irreversible: str | None = None) -> list[Step]:
    """One ``backfill`` step on ``t``, or one ``backfill-pN`` per leaf when it is partitioned."""
    if tree is None or not tree.leaves:
        return [Step(
            id="backfill", phase=Phase.BACKFILL, lock=LockLevel.ROW_EXCLUSIVE,
            description=description,
            backfill=BackfillSpec(schema=t.schema, table=t.name, key_columns=key,
                                  set_sql=set_sql, where_sql=where_sql),
            why_safe=why_safe, irreversible=irreversible,
        )]
    number = {(p.schema, p.name): i for i, p in enumerate(tree.partitions, 1)}
    return [Step(
        id=f"backfill-p{number[(p.schema, p.name)]}", phase=Phase.BACKFILL,
        lock=LockLevel.ROW_EXCLUSIVE, description=f"{description}: partition {p.display}",
        backfill=BackfillSpec(schema=p.schema, table=p.name, key_columns=key, set_sql=set_sql,
                              where_sql=where_sql),
        why_safe=why_safe + "; one leaf partition at a time, each with its own checkpoint",
        irreversible=irreversible,
    ) for p in tree.leaves]
