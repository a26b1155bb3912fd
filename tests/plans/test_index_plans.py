"""add-index, create-index and drop-index plans: CONCURRENTLY, outside a transaction, restartable."""

from __future__ import annotations

import pytest
from pgonline.strategies.add_index import (
    AddIndexArgs,
    AddIndexFacts,
    ExistingRelation,
    default_index_name,
    plan_add_index,
)
from pgonline.strategies.create_index import CreateIndexArgs, CreateIndexFacts, plan_create_index
from pgonline.strategies.drop_index import DropIndexArgs, plan_drop_index

from pgonline.catalog.facts import DropIndexFacts
from pgonline.catalog.partitions import Partition, PartitionTree
from pgonline.errors import CatalogError
from tests.plans.tables import EVENTS_PARTITIONED, USERS


def test_add_index_builds_concurrently_with_a_cleanup_of_an_invalid_leftover(snapshot):
    args = AddIndexArgs(name=default_index_name("users", ("email",), ()), columns=("email",))
    snapshot("add-index", plan_add_index(AddIndexFacts(USERS, partitioned=False, existing=None),
                                         args))


def test_add_index_unique_partial_expression_index_keeps_where_and_using(snapshot):
    args = AddIndexArgs(name="users_email_lower_key", expressions=("lower(email)",), unique=True,
                        where="email IS NOT NULL", using="btree")
    facts = AddIndexFacts(USERS, partitioned=False, existing=None)
    snapshot("add-index-unique-partial-expression", plan_add_index(facts, args))


def test_add_index_over_an_invalid_leftover_says_it_is_dropped_and_rebuilt(snapshot):
    args = AddIndexArgs(name="users_email_idx", columns=("email",))
    leftover = ExistingRelation(kind="i", on_table=True, valid=False)
    snapshot("add-index-invalid-leftover",
             plan_add_index(AddIndexFacts(USERS, partitioned=False, existing=leftover), args))


def test_add_index_refuses_an_invalid_index_another_backend_is_building_now():
    args = AddIndexArgs(name="users_email_idx", columns=("email",))
    building = ExistingRelation(kind="i", on_table=True, valid=False, building_pid=4242)
    with pytest.raises(CatalogError, match="being built right now by backend 4242"):
        plan_add_index(AddIndexFacts(USERS, partitioned=False, existing=building), args)


def test_drop_index_drops_concurrently_and_rollback_recreates_it_concurrently(snapshot):
    facts = DropIndexFacts(schema="public", name="users_email_idx", table='"public"."users"',
                           definition="CREATE INDEX users_email_idx ON public.users USING btree "
                           "(email)", partitioned=False)
    snapshot("drop-index", plan_drop_index(facts, DropIndexArgs("users_email_idx")))


def test_create_index_runs_the_migrations_statement_concurrently_and_converges_on_reruns(snapshot):
    # What `migrate up --online` runs for a definition add-index cannot spell.
    args = CreateIndexArgs(
        statement="CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON public.users"
                  " USING btree (email text_pattern_ops) INCLUDE (hits)",
        index="users_email_idx", if_not_exists=True)
    snapshot("create-index", plan_create_index(
        CreateIndexFacts(table='"public"."users"', schema="public"), args))


def _events_tree() -> PartitionTree:
    """events PARTITION BY RANGE (id): a hash-partitioned range, a list-partitioned range
    (sub-partitions), a plain range and a DEFAULT partition."""
    def part(name: str, parent: str, level: int, kind: str = "r", key: tuple[str, ...] = ()
             ) -> Partition:
        return Partition(oid=17000 + len(name), schema="public", name=name, parent_schema="public",
                         parent_name=parent, level=level, kind=kind, key_columns=key)
    return PartitionTree(key_columns=("id",), key_has_expressions=False, partitions=(
        part("events_r1", "events", 1, "p", ("id",)),
        part("events_r1_h0", "events_r1", 2), part("events_r1_h1", "events_r1", 2),
        part("events_r2", "events", 1, "p", ("kind",)),
        part("events_r2_a", "events_r2", 2),
        part("events_def", "events", 1),
    ))


def test_add_index_on_a_partitioned_table_builds_each_leaf_concurrently_and_attaches_it(snapshot):
    tree = _events_tree()
    args = AddIndexArgs(name="events_hits_idx", columns=("hits",), where="hits > 0")
    facts = AddIndexFacts(EVENTS_PARTITIONED, partitioned=True, existing=None, partitions=tree,
                          pieces=(None,) * len(tree.partitions))
    snapshot("add-index-partitioned", plan_add_index(facts, args))


def test_add_index_unique_on_a_partitioned_table_needs_every_levels_partition_key():
    tree = _events_tree()
    facts = AddIndexFacts(EVENTS_PARTITIONED, partitioned=True, existing=None, partitions=tree,
                          pieces=(None,) * len(tree.partitions))
    with pytest.raises(CatalogError, match=r"must include all partition key columns; \(id\) "
                                           r"lacks kind"):
        plan_add_index(facts, AddIndexArgs(name="u", columns=("id",), unique=True))
    plan_add_index(facts, AddIndexArgs(name="u", columns=("kind", "id"), unique=True))


def test_add_unique_on_a_partitioned_table_constrains_each_leaf_then_the_parent_adopts_them(
        snapshot):
    from pgonline.strategies.add_unique import AddUniqueArgs, AddUniqueFacts, plan_add_unique

    from pgonline.catalog.facts import DataViolations

    tree = _events_tree()
    facts = AddUniqueFacts(EVENTS_PARTITIONED, None, DataViolations(0), partitions=tree,
                           pieces=(None,) * len(tree.partitions))
    snapshot("add-unique-partitioned",
             plan_add_unique(facts, AddUniqueArgs(name="events_id_kind_key",
                                                  columns=("id", "kind"))))
    with pytest.raises(CatalogError, match=r"lacks kind"):
        plan_add_unique(facts, AddUniqueArgs(name="k", columns=("id",)))


def test_partitioned_index_refusals_name_the_postgresql_limitation():
    import dataclasses

    tree = _events_tree()
    foreign = dataclasses.replace(tree, partitions=(
        *tree.partitions,
        Partition(oid=18000, schema="public", name="events_remote", parent_schema="public",
                  parent_name="events", level=1, kind="f")))
    facts = AddIndexFacts(EVENTS_PARTITIONED, partitioned=True, existing=None, partitions=foreign,
                          pieces=(None,) * len(foreign.partitions))
    with pytest.raises(CatalogError, match=r"foreign-table partitions \(\"public\".\"events_remote\""
                                           r"\); PostgreSQL cannot index a foreign table"):
        plan_add_index(facts, AddIndexArgs(name="i", columns=("hits",)))
    by_expr = dataclasses.replace(tree, key_columns=(), key_has_expressions=True)
    facts = AddIndexFacts(EVENTS_PARTITIONED, partitioned=True, existing=None, partitions=by_expr,
                          pieces=(None,) * len(by_expr.partitions))
    with pytest.raises(CatalogError, match="partitioned by an expression"):
        plan_add_index(facts, AddIndexArgs(name="u", columns=("id", "kind"), unique=True))
    # A non-unique index on the same table is fine.
    plan_add_index(facts, AddIndexArgs(name="i", columns=("hits",)))
    # An index of that name that is not ours on a partition: refused, nothing built.
    taken = (ExistingRelation(kind="r", on_table=False, valid=False),
             *(None,) * (len(tree.partitions) - 1))
    facts = AddIndexFacts(EVENTS_PARTITIONED, partitioned=True, existing=None, partitions=tree,
                          pieces=taken)
    with pytest.raises(CatalogError, match="already exists"):
        plan_add_index(facts, AddIndexArgs(name="i", columns=("hits",)))
