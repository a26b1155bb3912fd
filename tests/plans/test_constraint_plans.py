"""set-not-null, add-check, add-foreign-key, add-unique and add-primary-key plans: NOT VALID
then VALIDATE, or a concurrent unique index then a catalog-only ADD CONSTRAINT USING INDEX."""

from __future__ import annotations

import dataclasses

import pytest
from pgonline.strategies.add_check import AddCheckArgs, AddCheckFacts, plan_add_check
from pgonline.strategies.add_foreign_key import (
    AddForeignKeyArgs,
    AddForeignKeyFacts,
    default_fk_name,
    plan_add_foreign_key,
)
from pgonline.strategies.add_primary_key import default_pk_name, plan_add_primary_key
from pgonline.strategies.add_unique import (
    AddUniqueArgs,
    AddUniqueFacts,
    default_unique_name,
    plan_add_unique,
)
from pgonline.strategies.set_not_null import SetNotNullArgs, SetNotNullFacts, plan_set_not_null

from pgonline.catalog.facts import ColumnFacts, DataViolations, TableFacts
from tests.plans.tables import EVENTS, ORDERS, PG18, SERVERS, USERS

NONE_FOUND = DataViolations(count=0)


@pytest.mark.parametrize("server", SERVERS)
def test_set_not_null_without_backfill_counts_nulls_then_validates(snapshot, server):
    facts = SetNotNullFacts(SERVERS[server], USERS, null_rows=0)
    snapshot(f"set-not-null-{server}", plan_set_not_null(facts, SetNotNullArgs(column="email")))


@pytest.mark.parametrize("server", SERVERS)
def test_set_not_null_backfill_installs_the_trigger_first_and_gates_its_drop(snapshot, server):
    facts = SetNotNullFacts(SERVERS[server], USERS, null_rows=1234)
    args = SetNotNullArgs(column="email", backfill="'user' || id || '@example.invalid'")
    snapshot(f"set-not-null-backfill-{server}", plan_set_not_null(facts, args))


def test_set_not_null_backfill_of_a_column_with_a_default_drops_the_trigger_without_a_gate(
        snapshot):
    email = ColumnFacts("email", "text", not_null=False, default="''")
    table = dataclasses.replace(USERS, columns=tuple(email if c.name == "email" else c
                                                     for c in USERS.columns))
    args = SetNotNullArgs(column="email", backfill="'user' || id || '@example.invalid'")
    snapshot("set-not-null-backfill-column-default",
             plan_set_not_null(SetNotNullFacts(PG18, table, null_rows=1234), args))


def test_add_check_adds_not_valid_then_validates(snapshot):
    args = AddCheckArgs(name="users_email_at", expression="email LIKE '%@%'")
    snapshot("add-check", plan_add_check(AddCheckFacts(USERS, NONE_FOUND), args))


def test_add_foreign_key_adds_not_valid_then_validates_and_notes_the_missing_index(snapshot):
    args = AddForeignKeyArgs(name=default_fk_name("orders", ("user_id",)), columns=("user_id",),
                             ref_table='"public"."users"', ref_columns=("id",), on_delete="cascade")
    snapshot("add-foreign-key",
             plan_add_foreign_key(AddForeignKeyFacts(ORDERS, USERS, NONE_FOUND), args))


def test_add_unique_builds_the_index_concurrently_then_attaches_it(snapshot):
    args = AddUniqueArgs(name=default_unique_name("users", ("email",)), columns=("email",))
    snapshot("add-unique", plan_add_unique(AddUniqueFacts(USERS, None, NONE_FOUND), args))


def test_add_primary_key_on_a_not_null_column_attaches_a_concurrent_index(snapshot):
    args = AddUniqueArgs(name=default_pk_name("events"), columns=("event_id",))
    snapshot("add-primary-key", plan_add_primary_key(AddUniqueFacts(EVENTS, None, NONE_FOUND), args))


def test_add_check_on_a_partitioned_table_validates_each_leaf_then_the_parent(snapshot):
    from pgonline.catalog.facts import DataViolations
    from tests.plans.tables import EVENTS_PARTITIONED
    from tests.plans.test_index_plans import _events_tree

    facts = AddCheckFacts(EVENTS_PARTITIONED, DataViolations(0), partitions=_events_tree())
    snapshot("add-check-partitioned",
             plan_add_check(facts, AddCheckArgs(name="hits_nonneg", expression="hits >= 0")))


def test_add_foreign_key_on_a_partitioned_table_validates_per_leaf_then_the_parent_adopts(
        snapshot):
    from pgonline.catalog.facts import DataViolations
    from tests.plans.tables import EVENTS_PARTITIONED, index
    from tests.plans.test_index_plans import _events_tree

    kinds = TableFacts(schema="public", name="kinds", oid=17100,
                       columns=(ColumnFacts("kind", "text", not_null=True),),
                       primary_key=("kind",), estimated_rows=3, size_bytes=8192,
                       indexes=(index("kinds", "kinds_pkey", "kind", primary=True),))
    facts = AddForeignKeyFacts(EVENTS_PARTITIONED, kinds, DataViolations(0),
                               partitions=_events_tree())
    snapshot("add-foreign-key-partitioned", plan_add_foreign_key(facts, AddForeignKeyArgs(
        name="events_kind_fkey", columns=("kind",), ref_table='"public"."kinds"',
        ref_columns=("kind",), on_delete="cascade")))


@pytest.mark.parametrize("server", SERVERS)
def test_set_not_null_on_a_partitioned_table_validates_each_leaf_before_the_parent(snapshot,
                                                                                   server):
    from tests.plans.tables import EVENTS_PARTITIONED
    from tests.plans.test_index_plans import _events_tree

    facts = SetNotNullFacts(SERVERS[server], EVENTS_PARTITIONED, null_rows=10,
                            partitions=_events_tree())
    snapshot(f"set-not-null-partitioned-{server}",
             plan_set_not_null(facts, SetNotNullArgs(column="hits", backfill="0")))
