"""`online lint DIR` judges each file as it will run: exactly as when that file is linted alone.

A directory is usually a schema's whole history, most of it applied long ago, so a table an
earlier file created is a live table for every later file.  The history used here
(tests/fixtures/lint_history/, a made-up lending library) mixes enums, functions, a trigger,
views, partial and expression indexes, CREATE TABLE AS, explicit transactions, a down file and
ALTERs on tables of earlier files.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgonline.lint import Finding, LintOptions, discover, lint_texts
from pgonline.lint.catalog_snapshot import CatalogSnapshot, RelationFacts
from pgonline.lint.names import TableRef
from pgonline.migrations.splitting import parse_text

HISTORY = Path(__file__).parent / "fixtures" / "lint_history"


def _history() -> list[tuple[str, str]]:
    """(name, sql) of every file, in migration order."""
    return [(Path(f.display).name, f.text) for f in discover([str(HISTORY)])]


def _facts(name: str, rows: int, columns: dict[str, str], not_null: Sequence[str] = ()) -> RelationFacts:
    return RelationFacts("public", name, rows, rows * 150, columns, frozenset(not_null), frozenset())


# What a production catalog could say: books and authors are big, members was never
# created (the files that make it are pending), reviews has been renamed away.
CATALOG = CatalogSnapshot(
    server_version_num=160004,
    relations={
        TableRef(None, "books"): _facts("books", 1_200_000, {
            "id": "bigint", "author_id": "bigint", "title": "character varying(120)",
            "price": "numeric(8,2)", "published": "boolean"}, ("id", "author_id", "title")),
        TableRef(None, "authors"): _facts("authors", 40_000, {
            "id": "bigint", "name": "text", "born": "date"}, ("id", "name")),
        TableRef(None, "loans"): _facts("loans", 3_000_000, {
            "id": "bigint", "book_id": "bigint", "member_id": "bigint", "due": "date"}),
    },
    function_volatility={"book_slug": "i", "clock_timestamp": "v"},
    missing=frozenset({TableRef(None, "members"), TableRef(None, "reviews")}),
)

OPTIONS = {
    "pg10": LintOptions(pg_major=10), "pg12": LintOptions(pg_major=12),
    "pg14": LintOptions(pg_major=14), "pg18": LintOptions(pg_major=18),
    "pg16-catalog": LintOptions(pg_major=16, catalog=CATALOG),
}


def _by_file(findings: Sequence[Finding]) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for f in findings:
        out.setdefault(f.path, []).append(f)
    return out


def test_the_history_is_big_enough_to_mean_something() -> None:
    files = _history()
    assert len(files) >= 20
    # Every file parses, as PostgreSQL's own grammar sees it (no syntax-error noise).
    for name, text in files:
        parse_text(text, Path(name))


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_each_file_of_the_directory_gets_the_findings_it_gets_alone(options: LintOptions) -> None:
    files = _history()
    together = _by_file(lint_texts(files, options))
    for name, text in files:
        assert together.get(name, []) == lint_texts([(name, text)], options), name


@pytest.mark.parametrize("seed", range(25))
def test_any_subset_in_any_order_changes_no_files_findings(seed: int) -> None:
    """Property: which files come before a file (and in what order) never changes its findings."""
    rng = random.Random(seed)
    files = _history()
    chosen = rng.sample(files, rng.randint(2, len(files)))
    options = rng.choice(list(OPTIONS.values()))
    together = _by_file(lint_texts(chosen, options))
    for name, text in chosen:
        assert together.get(name, []) == lint_texts([(name, text)], options), (seed, name)


def test_statements_on_tables_of_earlier_files_are_reported() -> None:
    found = {(f.path, f.code) for f in lint_texts(_history(), OPTIONS["pg14"])}
    # Each of these tables was created by an earlier file of the directory.
    assert {
        ("003_books_title_index.sql", "require-concurrent-index-creation"),
        ("009_price_check.sql", "constraint-missing-not-valid"),
        ("012_member_email_required.sql", "set-not-null-without-check"),
        ("013_rename_born.sql", "rename-column"),
        ("014_backfill.sql", "update-without-where"),
        ("017_slug_index.sql", "require-concurrent-index-creation"),
        ("019_author_stats_refresh.sql", "add-column-volatile-default"),
        ("020_member_email_unique.sql", "unique-constraint-without-index"),
        ("022_rename_reviews.sql", "rename-table"),
        ("024_drop_stats.sql", "drop-table"),
        ("025_member_fk_to_authors.sql", "constraint-missing-not-valid"),
    } <= found
    # Within a file the table it just created is still new ...
    assert ("018_author_stats.sql", "require-concurrent-index-creation") not in found
    # ... until the transaction that created it commits.
    reviews = [(f.code, f.line) for f in lint_texts(_history(), OPTIONS["pg14"])
               if f.path == "015_reviews.sql"]
    assert reviews == [("require-concurrent-index-creation", 8), ("column-type-rewrite", 9)]


# --- the command line, with catalog facts from a real database -------------------------------

def _apply(db: psycopg.Connection[Any], path: Path) -> None:
    # Statement by statement (CREATE INDEX CONCURRENTLY refuses a multi-statement string).
    for s in parse_text(path.read_text(), path).statements:
        db.execute(s.text.encode())


def _fill(db: psycopg.Connection[Any]) -> None:
    db.execute("INSERT INTO authors (name) SELECT 'author ' || g FROM generate_series(1, 50) g")
    db.execute("INSERT INTO books (id, author_id, title, price, published)"
               " SELECT g, 1 + g % 50, 'book ' || g, 9.99, g % 2 = 0 FROM generate_series(1, 3000) g")
    db.execute("ANALYZE authors")
    db.execute("ANALYZE books")


def _lint_json(online: Any, *paths: str) -> list[dict[str, Any]]:
    r = online("lint", "--format", "json", *paths)
    assert r.code in (0, 9), r.err
    found: list[dict[str, Any]] = json.loads(r.out)
    return found


def test_with_dsn_each_file_is_judged_alone_against_the_same_database(
        online: Any, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    history = tmp_path / "history"
    shutil.copytree(HISTORY, history)
    files = sorted(history.glob("*.sql"))
    for path in files:
        if path.name < "015":  # the first 14 migrations are applied; the rest are pending
            _apply(db, path)
    _fill(db)
    together: dict[str, list[dict[str, Any]]] = {}
    for f in _lint_json(online, str(history)):
        together.setdefault(f["file"], []).append(f)
    for path in files:
        assert together.get(str(path), []) == _lint_json(online, str(path)), path.name
    messages = {f["file"].rsplit("/", 1)[-1]: f["message"] for fs in together.values() for f in fs
                if f["code"] in ("require-concurrent-index-creation", "constraint-missing-not-valid")}
    # The catalog's row counts are used as before ...
    assert "books (~3k rows, " in messages["003_books_title_index.sql"]
    # ... and CREATE TABLE IF NOT EXISTS of the existing books is a no-op: books stays live.
    assert "books (~3k rows, " in messages["023_books_again.sql"]


def test_a_reference_the_database_cannot_resolve_borrows_no_facts_from_another_file(
        online: Any, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    db.execute("CREATE SCHEMA app")
    db.execute("CREATE TABLE app.events (id bigint, kind text)")
    db.execute("INSERT INTO app.events SELECT g, 'k' FROM generate_series(1, 2000) g")
    (tmp_path / "001_app.sql").write_text(
        "SET lock_timeout = '2s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS e1 ON app.events (kind);\n")
    # `events` is not on the search_path: the database does not know this table.
    (tmp_path / "002_events.sql").write_text(
        "SET lock_timeout = '2s';\nCREATE INDEX IF NOT EXISTS e2 ON events (kind);\n")
    alone = _lint_json(online, str(tmp_path / "002_events.sql"))
    assert [f for f in _lint_json(online, str(tmp_path)) if f["file"].endswith("002_events.sql")] == alone
    assert [f["message"] for f in alone] == [
        "CREATE INDEX on events takes a SHARE lock that blocks writes for the whole build"]


# A dbmate file holds two migrations, run apart: its down section is judged as dbmate runs it,
# alone (issue #11): the up's tables are live by then and its lock_timeout long gone.
DBMATE = (
    "-- pgonline:ignore-file non-idempotent\n"      # 1: a header, before the up marker
    "-- migrate:up\n"                               # 2
    "SET lock_timeout = '2s';\n"                    # 3
    "CREATE TABLE tags (id bigint, name text);\n"   # 4
    "CREATE INDEX tags_name ON tags (name);\n"      # 5: new table: fine
    "ALTER TABLE books ADD COLUMN tag_id bigint;\n"  # 6: lock_timeout set: fine
    "\n"
    "-- migrate:down\n"                             # 8
    "DROP INDEX tags_name;\n"                       # 9
    "DROP TABLE tags;\n"                            # 10
    "ALTER TABLE books DROP COLUMN tag_id;\n"       # 11
)


def test_a_dbmate_down_section_is_judged_alone() -> None:
    found = sorted((f.line, f.code) for f in lint_texts([("20240101120000_tags.sql", DBMATE)],
                                                           OPTIONS["pg14"]))
    assert found == [
        (9, "missing-lock-timeout"), (9, "require-concurrent-index-deletion"),
        (10, "drop-table"), (11, "drop-column"),
    ]


def test_a_dbmate_section_gets_the_findings_of_the_same_statements_in_a_file_of_their_own() -> None:
    up, down = DBMATE.split("-- migrate:down\n")
    lines_before_down = up.count("\n") + 1
    as_two = [(f.line, f.column, f.code, f.message) for f in lint_texts([("u.sql", up)], OPTIONS["pg14"])]
    as_two += [(f.line + lines_before_down, f.column, f.code, f.message)
               for f in lint_texts([("d.sql", "-- pgonline:ignore-file non-idempotent\n" + down)],
                                   OPTIONS["pg14"])]
    as_two = [(line - (1 if line > lines_before_down else 0), *rest) for line, *rest in as_two]
    assert sorted((f.line, f.column, f.code, f.message)
                  for f in lint_texts([("x.sql", DBMATE)], OPTIONS["pg14"])) == sorted(as_two)


def test_the_dbmate_history_is_linted_section_by_section(tmp_path: Path) -> None:
    from tests.support.histories import write_history

    root = Path(write_history(tmp_path, "dbmate"))
    for f in discover([str(root)]):
        if "-- migrate:down" not in f.text:
            continue
        up_text, down_text = f.text.split("-- migrate:down", 1)
        down_line = up_text.count("\n") + 1
        found = lint_texts([(f.display, f.text)], OPTIONS["pg14"])
        # Every finding of the down section comes from its own statements only.
        down_only = lint_texts([("d.sql", "\n" * (down_line - 1) + "--" + down_text)], OPTIONS["pg14"])
        assert sorted((x.line, x.code) for x in found if x.line >= down_line) == \
               sorted((x.line, x.code) for x in down_only), f.display
