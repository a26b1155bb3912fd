"""The fill trigger in plans built from hand-made facts (no server): which plans get one,
where its steps sit, its names, and the NEW.col rewrite of the expression."""

from __future__ import annotations

import pytest
from pgonline.strategies.add_column import AddColumnArgs, AddColumnFacts, plan_add_column
from pgonline.strategies.set_not_null import SetNotNullArgs, SetNotNullFacts, plan_set_not_null

from pgonline.catalog.facts import ColumnFacts, ExpressionFacts, ServerFacts, TableFacts
from pgonline.errors import UsageError
from pgonline.sql.row_expression import over_new_row, referenced_columns


def _table(name: str = "users", schema: str = "public") -> TableFacts:
    return TableFacts(schema=schema, name=name, oid=1,
                      columns=(ColumnFacts("id", "bigint", True), ColumnFacts("email", "text", False)),
                      primary_key=("id",), estimated_rows=100, size_bytes=8192)


def _add(major: int = 18, table: TableFacts | None = None, **kw: object):
    args = AddColumnArgs(column=str(kw.pop("column", "token")), type_sql="text", **kw)  # type: ignore[arg-type]
    default = None if args.default is None else ExpressionFacts(args.default, volatile=True)
    return plan_add_column(AddColumnFacts(ServerFacts(major * 10000), table or _table(), default,
                                          has_rows=True), args)


def test_trigger_is_created_in_the_add_column_step_and_dropped_last():
    plan = _add(backfill="md5(email)", not_null=True)
    ids = [s.id for s in plan.steps]
    assert ids == ["add-column", "backfill", "vacuum", "check-nulls", "add-not-null",
                   "validate-not-null", "drop-fill-trigger"]
    add = plan.steps[0]
    assert add.sql is not None and add.transactional
    assert add.sql.index("ADD COLUMN") < add.sql.index("CREATE TRIGGER")
    # Rollback drops the trigger and function before the column they read.
    assert add.undo_sql is not None
    assert add.undo_sql.index("DROP TRIGGER") < add.undo_sql.index("DROP FUNCTION") < \
        add.undo_sql.index("DROP COLUMN")


def test_older_servers_drop_the_trigger_after_set_not_null():
    ids = [s.id for s in _add(major=15, backfill="md5(email)", not_null=True).steps]
    assert ids[-3:] == ["set-not-null", "drop-check", "drop-fill-trigger"]
    assert ids.index("check-nulls") < ids.index("add-check")


def test_a_volatile_default_alone_needs_no_trigger():
    plan = _add(default="gen_random_uuid()::text", not_null=True)
    assert all("TRIGGER" not in (s.sql or "") for s in plan.steps)
    assert "drop-fill-trigger" not in [s.id for s in plan.steps]


def test_without_a_default_the_trigger_drop_waits_for_the_operator():
    plan = _add(backfill="md5(email)", not_null=True)
    drop = plan.steps[-1]
    assert drop.id == "drop-fill-trigger" and drop.gate is not None
    assert "sets token on every INSERT" in drop.gate
    assert "a run of all phases stops before dropping it" in " ".join(plan.notes)
    assert [s.id for s in plan.steps if s.gate] == ["drop-fill-trigger"]
    with_default = _add(backfill="md5(email)", default="''", not_null=True)
    assert not any(s.gate for s in with_default.steps)
    notes = " ".join(with_default.notes)
    assert "the default if they omit the column" in notes and "stops before" not in notes


def test_set_not_null_backfill_of_a_column_without_default_gates_the_trigger_drop():
    plan = plan_set_not_null(SetNotNullFacts(ServerFacts(180000), _table(), null_rows=3),
                             SetNotNullArgs(column="email", backfill="'x' || id"))
    assert [s.id for s in plan.steps if s.gate] == ["drop-fill-trigger"]


def test_set_not_null_backfill_installs_the_trigger_before_the_backfill():
    plan = plan_set_not_null(SetNotNullFacts(ServerFacts(180000), _table(), null_rows=3),
                             SetNotNullArgs(column="email", backfill="'x' || id"))
    ids = [s.id for s in plan.steps]
    assert ids[:2] == ["install-fill-trigger", "backfill"] and ids[-1] == "drop-fill-trigger"
    assert plan.steps[0].undo_sql is not None and "DROP TRIGGER" in plan.steps[0].undo_sql


def test_trigger_names_are_distinct_per_table_and_fit_63_bytes():
    long = "t" * 63
    sqls = {_add(table=_table(n), backfill="1")
            .steps[-1].sql for n in ("a_b", "a", long, long[:-1] + "u")}
    assert len(sqls) == 4
    name = _add(table=_table(long), column="c" * 63, backfill="1").notes[1].split("trigger ")[1]
    name = name.split(",")[0]
    assert name.startswith("zz_pgonline_fill_") and len(name.encode()) <= 63


@pytest.mark.parametrize(("expr", "rendered"), [
    ("md5(email)", "(md5(new.email))"),
    ("users.email || public.users.id", "(new.email || new.id)"),
    ("row_to_json(users)::text", "(CAST(row_to_json(new) AS text))"),
    ('"Mixed Case" || lower(email)', '(new."Mixed Case" || lower(new.email))'),
    ("'email' || email", "('email' || new.email)"),
])
def test_column_references_are_rewritten_to_the_new_row_on_the_parse_tree(expr, rendered):
    assert over_new_row(expr, schema="public", table="users") == rendered


@pytest.mark.parametrize("expr", ["(select max(id) from users)", "exists (select 1)", "users.*"])
def test_what_reads_more_than_the_row_is_refused(expr):
    with pytest.raises(UsageError, match="cannot be evaluated per row"):
        over_new_row(expr, schema="public", table="users")


def test_referenced_columns_names_what_the_expression_reads():
    assert referenced_columns("md5(email) || users.id", schema="public", table="users") == {
        "email", "id"}
    assert "*" in referenced_columns("row_to_json(users)::text", schema="public", table="users")
