"""add-column plans: the fast default, the staged path with a volatile default, and
--backfill with and without --default, on PostgreSQL 18 and 15."""

from __future__ import annotations

import pytest
from pgonline.strategies.add_column import AddColumnArgs, AddColumnFacts, plan_add_column

from pgonline.catalog.facts import ExpressionFacts, ServerFacts
from pgonline.engine.plan import Plan
from tests.plans.tables import PG18, SERVERS, USERS


def _plan(server: ServerFacts, args: AddColumnArgs, *, volatile: bool = False) -> Plan:
    default = None if args.default is None else ExpressionFacts(args.default, volatile=volatile)
    return plan_add_column(AddColumnFacts(server, USERS, default, has_rows=True), args)


def test_add_column_with_a_constant_default_is_one_catalog_only_alter(snapshot):
    args = AddColumnArgs(column="status", type_sql="text", default="'active'", not_null=True)
    snapshot("add-column-fast-default", _plan(PG18, args))


@pytest.mark.parametrize("server", SERVERS)
def test_add_column_with_a_volatile_default_backfills_before_constraining(snapshot, server):
    args = AddColumnArgs(column="token", type_sql="uuid", default="gen_random_uuid()",
                         not_null=True)
    snapshot(f"add-column-volatile-default-{server}", _plan(SERVERS[server], args, volatile=True))


@pytest.mark.parametrize("server", SERVERS)
def test_add_column_backfill_without_default_gates_the_trigger_drop(snapshot, server):
    args = AddColumnArgs(column="email_domain", type_sql="text",
                         backfill="split_part(email, '@', 2)", not_null=True)
    snapshot(f"add-column-backfill-no-default-{server}", _plan(SERVERS[server], args))


@pytest.mark.parametrize("server", SERVERS)
def test_add_column_backfill_with_default_drops_the_trigger_without_a_gate(snapshot, server):
    args = AddColumnArgs(column="email_domain", type_sql="text", default="''",
                         backfill="split_part(email, '@', 2)", not_null=True)
    snapshot(f"add-column-backfill-with-default-{server}", _plan(SERVERS[server], args))


def test_add_column_backfill_of_a_nullable_column_drops_the_trigger_after_the_backfill(snapshot):
    args = AddColumnArgs(column="email_domain", type_sql="text", backfill="split_part(email, '@', 2)")
    snapshot("add-column-backfill-nullable", _plan(PG18, args))
