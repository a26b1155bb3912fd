"""sqltext without a server: user SQL is one expression, rendered from its parse."""

from __future__ import annotations

import pytest

from pgonline.errors import UsageError
from pgonline.sql import expressions as sqltext


@pytest.mark.parametrize(("text", "rendered"), [
    ("x::int", "CAST(x AS integer)"),
    ("CASE WHEN a THEN 1 ELSE 2 END", "CASE WHEN a THEN 1 ELSE 2 END"),
    ("split_part(email, '@', 2)", "split_part(email, '@', 2)"),
    ("now() - interval '1 day'", "now() - CAST('1 day' AS interval)"),
    ("ARRAY[1,2]", "ARRAY[1, 2]"),
    ("a IS NOT NULL", "a IS NOT NULL"),
    ('"Mixed Case" || x', '"Mixed Case" || x'),
    ("'a) or (true --'", "'a) or (true --'"),
    ("$$it's ) -- $$", "'it''s ) -- '"),
    ("$q$)$q$ || 'x'", "')' || 'x'"),
    ("id % 2 = 0", "id % 2 = 0"),
    ("hits + 1 -- a comment", "hits + 1"),
    ("/* ) */ hits", "hits"),
    ("(a OR b) AND c", "(a OR b) AND c"),
    ("count(*)", "count(*)"),
    ("(1, 2)", "(1, 2)"),
])
def test_legitimate_expressions_come_back_rendered_from_their_parse(text, rendered):
    assert sqltext.expression(text) == rendered


@pytest.mark.parametrize("text", [
    "true) or (true",           # closes the parentheses callers wrap it in
    "1); drop table users; --",
    "1) --",
    "x) ; select (1",
    "a > 0) or (true",
    "1; select 2",              # a second statement
    "1, 2",                     # a second target
    "1 AS x",                   # an alias
    "1 FROM users", "1 WHERE true", "1 GROUP BY 1", "1 HAVING true", "1 WINDOW w AS ()",
    "1 ORDER BY 1", "1 LIMIT 1", "1 OFFSET 1", "DISTINCT 1", "DISTINCT ON (a) a",
    "1 INTO t", "1 FOR UPDATE", "1 UNION SELECT 2", "*", "users.*",
    "-- only a comment", "1 /* unterminated", "", "   ", "1\x00",
    "id = $1",                  # would bind to the batch query's own parameters
])
def test_anything_but_exactly_one_expression_is_refused(text):
    with pytest.raises(UsageError):
        sqltext.expression(text)


def test_subqueries_are_refused_unless_allowed():
    with pytest.raises(UsageError, match="subquery"):
        sqltext.expression("(SELECT 1)")
    assert sqltext.expression("(SELECT 1)", allow_subquery=True) == "(SELECT 1)"


def test_a_trailing_comment_cannot_eat_what_callers_append():
    rendered = sqltext.expression("1 --")
    assert "--" not in rendered and rendered == "1"


def test_assignments_are_column_and_rendered_expression_pairs():
    assert sqltext.assignments('email = lower(email), "Hits" = hits::int + 1 -- note') == (
        ("email", "lower(email)"), ("Hits", "CAST(hits AS integer) + 1"))


@pytest.mark.parametrize("text", [
    "hits = hits + 1) , hits = (0",
    "hits = 1 WHERE true",
    "hits = 1 FROM other",
    "hits = 1 RETURNING *",
    "hits = 1; drop table users",
    "hits = DEFAULT",
    "hits = $1",
    "hits = 1 /* unterminated",
    "hits",
    "",
])
def test_assignments_refuse_anything_but_plain_assignments(text):
    with pytest.raises(UsageError):
        sqltext.assignments(text)


@pytest.mark.parametrize(("text", "rendered"), [
    ("int", "integer"), ("varchar(255)[]", "varchar(255)[]"), ("numeric(10,2)", "numeric(10, 2)"),
    ('"Mixed"', '"Mixed"'), ("timestamp with time zone", "timestamp with time zone"),
    ("int -- comment", "integer"),
])
def test_type_names_come_back_canonical(text, rendered):
    assert sqltext.type_name(text) == rendered


@pytest.mark.parametrize("text", [
    "int); drop table x; --", "int; drop table x", "int FROM pg_class", "int, 1", "int AS x",
    "int::text", 'int COLLATE "C"', "int IS NULL", "setof int", "int /*", "",
])
def test_anything_but_a_type_name_is_refused(text):
    with pytest.raises(UsageError):
        sqltext.type_name(text)
