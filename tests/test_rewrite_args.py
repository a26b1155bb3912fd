"""``migrate up --online`` builds each change's arguments from the statement's parse tree.

Before, a recogniser re-quoted names and re-printed expressions into strings
and handed them to the command functions, which parsed them again.  The
fixture ``fixtures/rewrite_string_path_args.json`` holds what that string
path passed for every statement below (captured from the previous version);
the arguments built from the tree must equal, field by field, what the
command line parses those strings into.  They are the job's recorded
arguments, so a migration interrupted under the previous version still finds
(and resumes) its job when re-run.  Offline: no server is needed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from pglast import parse_sql

from pgonline.errors import UsageError
from pgonline.migrations.rewrite import rewrite_for
from pgonline.migrations.splitting import Statement
from pgonline.registry import command

GOLDEN = json.loads((Path(__file__).parent / "fixtures" / "rewrite_string_path_args.json")
                    .read_text(encoding="utf-8"))


def _rewrite(text: str) -> Any:
    (raw,) = parse_sql(text)
    rewrite = rewrite_for(Statement(text=text, offset=0, node=raw.stmt))
    assert rewrite is not None and rewrite.change is not None, text
    return rewrite


def _tuples(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@pytest.mark.parametrize("case", GOLDEN, ids=[c["statement"][:60] for c in GOLDEN])
def test_arguments_from_the_tree_equal_what_the_string_path_recorded(case: dict[str, Any]):
    rewrite = _rewrite(case["statement"])
    assert rewrite.command == case["kind"]
    built = rewrite.change()
    parsed = command(case["kind"]).parse(
        *map(_tuples, case["values"]), **{k: _tuples(v) for k, v in case["options"].items()})
    assert built == parsed
    assert asdict(built.args) == asdict(parsed.args)  # the job's recorded arguments


def test_every_recogniser_that_builds_a_change_is_covered():
    kinds = {c["kind"] for c in GOLDEN}
    assert kinds == {"add-column", "add-index", "drop-index", "set-not-null", "add-check",
                     "add-foreign-key", "add-unique", "add-primary-key"}


@pytest.mark.parametrize("text", [
    "ALTER TABLE t ADD COLUMN c int DEFAULT $1",
    "CREATE INDEX ON t ((a + $1))",
    "CREATE INDEX ON t (a) WHERE b IN (SELECT 1)",
])
def test_bad_expressions_in_a_statement_are_refused_like_on_the_command_line(text: str):
    rewrite = _rewrite(text)
    with pytest.raises(UsageError):
        rewrite.change()
