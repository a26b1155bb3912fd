"""backfill plans: one batched UPDATE over the primary key, irreversible by design."""

from __future__ import annotations

from pgonline.strategies.backfill_set import BackfillArgs, BackfillFacts, plan_backfill

from tests.plans.tables import USERS


def test_backfill_with_where_updates_matching_rows_in_keyset_batches(snapshot):
    args = BackfillArgs(columns=("email",), values=("lower(email)",),
                        where="email <> lower(email)")
    snapshot("backfill-where", plan_backfill(BackfillFacts(USERS), args))


def test_backfill_of_two_columns_without_where_notes_every_row_is_updated(snapshot):
    args = BackfillArgs(columns=("email", "name"), values=("lower(email)", "trim(name)"))
    snapshot("backfill-all-rows", plan_backfill(BackfillFacts(USERS), args))


def test_backfill_on_a_partitioned_table_walks_each_leaf_as_its_own_step(snapshot):
    from pgonline.strategies.backfill_set import BackfillArgs, BackfillFacts, plan_backfill

    from tests.plans.tables import EVENTS_PARTITIONED
    from tests.plans.test_index_plans import _events_tree

    facts = BackfillFacts(EVENTS_PARTITIONED, partitions=_events_tree())
    snapshot("backfill-partitioned", plan_backfill(facts, BackfillArgs(
        columns=("hits",), values=("0",), where="hits IS NULL")))
