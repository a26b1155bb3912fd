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
