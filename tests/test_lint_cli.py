"""`online lint`: the seed migration, output formats, exit codes, and catalog-aware findings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg

from pgonline.lint import LintOptions, lint_texts
from pgonline.lint.volatility import NOT_VOLATILE, VOLATILE
from tests.support.tables import create_users, schema_snapshot

SEED = Path(__file__).parent / "fixtures" / "seed_migrations"  # the seed document, verbatim
UP = SEED / "006_add_user_photos.sql"
DOWN = SEED / "006_add_user_photos_down.sql"


def write(tmp_path: Path, name: str, sql: str) -> str:
    path = tmp_path / name
    path.write_text(sql)
    return str(path)


# --- the seed's 006_add_user_photos ---------------------------------------------------

def test_seed_partial_unique_constraint_is_a_syntax_error_at_its_where(online: Any) -> None:
    r = online("lint", str(UP), with_dsn=False)
    assert r.code == 9
    line = next(i for i, text in enumerate(UP.read_text().splitlines(), 1) if "unique_primary_photo" in text)
    column = UP.read_text().splitlines()[line - 1].index("WHERE") + 1
    assert (line, column) == (23, 66)
    assert f"{UP}:23:66: error syntax-error: syntax error at or near \"WHERE\"" in r.out
    assert ("CREATE UNIQUE INDEX unique_primary_photo ON user_photos (user_id, is_primary) "
            "WHERE is_primary = true") in r.out
    # The table the broken statement meant to create still counts as new: its
    # plain CREATE INDEX statements are not reported as locking a live table.
    assert "require-concurrent-index-creation" not in r.out
    assert "1 problem (1 error, 0 warnings) in 1 file" in r.out


def test_seed_down_migration_findings(online: Any) -> None:
    r = online("lint", "--format", "json", str(DOWN), with_dsn=False)
    found = {(f["code"], f["line"]) for f in json.loads(r.out)}
    assert found == {("missing-lock-timeout", 8), ("require-concurrent-index-deletion", 14),
                     ("require-concurrent-index-deletion", 15), ("require-concurrent-index-deletion", 16),
                     ("drop-table", 19)}


def test_seed_directory_is_linted_in_migration_order(online: Any, tmp_path: Path) -> None:
    for f in (UP, DOWN):
        shutil.copy(f, tmp_path / f.name)
    r = online("lint", "--format", "json", str(tmp_path), with_dsn=False)
    files = [Path(f["file"]).name for f in json.loads(r.out)]
    assert files[0] == UP.name and set(files) == {UP.name, DOWN.name}


def test_corrected_seed_still_needs_lock_timeout_for_its_foreign_key_to_users() -> None:
    fixed = UP.read_text().replace(
        ",\n    CONSTRAINT unique_primary_photo UNIQUE (user_id, is_primary) WHERE is_primary = true", "")
    found = lint_texts([("006.sql", fixed)], LintOptions(pg_major=15))
    assert [(f.code, f.line) for f in found] == [("missing-lock-timeout", 13)]
    assert "SHARE ROW EXCLUSIVE" in found[0].message and "users" in found[0].message


# --- formats ------------------------------------------------------------------------------

def test_human_format_shows_source_line_caret_and_help(online: Any) -> None:
    r = online("lint", str(UP), with_dsn=False)
    lines = r.out.splitlines()
    i = next(n for n, text in enumerate(lines) if text.startswith(f"{UP}:23:66:"))
    assert lines[i + 1] == "    | " + UP.read_text().splitlines()[22]
    assert lines[i + 2] == "    | " + " " * 65 + "^"
    assert lines[i + 3].startswith("    help: only an index can be partial")


def test_json_format_is_a_list_of_findings(online: Any) -> None:
    r = online("lint", "--format", "json", str(UP), with_dsn=False)
    assert json.loads(r.out) == [{
        "file": str(UP), "line": 23, "column": 66, "severity": "error", "code": "syntax-error",
        "message": 'syntax error at or near "WHERE": a UNIQUE constraint cannot have a WHERE clause',
        "help": "only an index can be partial; drop the WHERE from the constraint and create a partial "
                "unique index instead: CREATE UNIQUE INDEX unique_primary_photo ON user_photos "
                "(user_id, is_primary) WHERE is_primary = true",
    }]


def test_github_format_emits_workflow_annotations(online: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "001_x,y.sql", "SET lock_timeout = '1s';\nCREATE TABLE t (a int);\n"
                                          "CREATE INDEX IF NOT EXISTS i ON users (email);\n")
    r = online("lint", "--format", "github", path, with_dsn=False)
    lines = r.out.splitlines()
    escaped = path.replace(",", "%2C")
    assert lines[0].startswith(f"::warning file={escaped},line=2,col=1,title=non-idempotent::CREATE TABLE t")
    assert lines[1].startswith(
        f"::error file={escaped},line=3,col=1,title=require-concurrent-index-creation::")
    assert "%0Ahelp: use CREATE INDEX CONCURRENTLY" in lines[1]
    assert r.code == 9


# --- exit codes ------------------------------------------------------------------------------

def test_clean_file_exits_zero(online: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "ok.sql", "SET lock_timeout = '2s';\n"
                                     "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);\n")
    r = online("lint", path, with_dsn=False)
    assert r.code == 0 and "no problems in 1 file" in r.out


def test_warnings_fail_only_with_fail_on_warning(online: Any, tmp_path: Path) -> None:
    path = write(tmp_path, "w.sql", "CREATE TABLE t (a int);\n")
    assert online("lint", path, with_dsn=False).code == 0
    r = online("lint", "--fail-on", "warning", path, with_dsn=False)
    assert r.code == 9 and "at or above severity warning" in r.err


def test_missing_path_is_a_usage_error(online: Any, tmp_path: Path) -> None:
    r = online("lint", str(tmp_path / "nope.sql"), with_dsn=False)
    assert r.code == 2 and "no such file or directory" in r.err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert online("lint", str(empty), with_dsn=False).code == 2
    assert online("lint", with_dsn=False).code == 2


def test_list_rules_prints_every_code(online: Any) -> None:
    r = online("lint", "--list-rules", with_dsn=False)
    assert r.code == 0
    for code in ("require-concurrent-index-creation", "syntax-error", "missing-lock-timeout"):
        assert code in r.out


# --- catalog-aware (real database) -----------------------------------------------------------

def test_dsn_adds_table_size_to_rewrite_findings(online: Any, db: psycopg.Connection[Any],
                                                 tmp_path: Path) -> None:
    create_users(db, 5000)
    before = schema_snapshot(db)
    path = write(tmp_path, "m.sql", "SET lock_timeout = '2s';\n"
                                    "ALTER TABLE users ADD COLUMN IF NOT EXISTS t uuid\n"
                                    "  DEFAULT gen_random_uuid();\n")
    r = online("lint", "--format", "json", path)
    [finding] = json.loads(r.out)
    assert finding["code"] == "add-column-volatile-default"
    assert "rewrites users (~5k rows, " in finding["message"]
    assert finding["message"].endswith(" kB)")
    assert schema_snapshot(db) == before  # lint never changes the database


def test_dsn_checks_column_type_changes_against_the_catalog(online: Any, db: psycopg.Connection[Any],
                                                            tmp_path: Path) -> None:
    create_users(db, 10)
    db.execute("ALTER TABLE users ADD COLUMN nick varchar(50)")
    path = write(tmp_path, "m.sql", "SET lock_timeout = '2s';\n"
                                    "ALTER TABLE users ALTER COLUMN nick TYPE varchar(200);\n"
                                    "ALTER TABLE users ALTER COLUMN hits TYPE bigint;\n")
    r = online("lint", "--format", "json", path)
    [finding] = json.loads(r.out)
    assert finding["line"] == 3 and "int4 -> int8" in finding["message"]
    assert "rewrites users (10 rows, " in finding["message"]


def test_dsn_knows_user_function_volatility_and_existing_not_null_checks(
        online: Any, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    create_users(db, 10)
    db.execute("CREATE FUNCTION next_code() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1'")
    db.execute("CREATE FUNCTION fixed_code() RETURNS int IMMUTABLE LANGUAGE sql AS 'SELECT 1'")
    db.execute("ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL)")
    path = write(tmp_path, "m.sql", "SET lock_timeout = '2s';\n"
                                    "ALTER TABLE users ADD COLUMN IF NOT EXISTS a int DEFAULT next_code();\n"
                                    "ALTER TABLE users ADD COLUMN IF NOT EXISTS b int DEFAULT fixed_code();\n"
                                    "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n")
    offline = online("lint", "--format", "json", path, with_dsn=False)
    assert {(f["line"], f["severity"]) for f in json.loads(offline.out)} == \
        {(2, "warning"), (3, "warning"), (4, "error")}
    r = online("lint", "--format", "json", path)
    assert [(f["line"], f["code"], f["severity"]) for f in json.loads(r.out)] == \
        [(2, "add-column-volatile-default", "error")]


REPRO = {"001_create.sql": "CREATE TABLE t (id int PRIMARY KEY, a int);\n",
         "002_change.sql": "CREATE INDEX t_a ON t (a);\nALTER TABLE t ALTER COLUMN a TYPE bigint;\n"}


def _json(online: Any, *args: str, with_dsn: bool = True) -> list[dict[str, Any]]:
    r = online("lint", "--format", "json", *args, with_dsn=with_dsn)
    assert r.code in (0, 9), r.err
    found: list[dict[str, Any]] = json.loads(r.out)
    return found


def test_directory_reports_statements_on_a_table_an_earlier_file_created(
        online: Any, tmp_path: Path) -> None:
    for name, sql in REPRO.items():
        write(tmp_path, name, sql)
    alone = _json(online, str(tmp_path / "002_change.sql"), with_dsn=False)
    together = _json(online, str(tmp_path), with_dsn=False)
    assert [f for f in together if f["file"].endswith("002_change.sql")] == alone
    found = {(f["line"], f["code"]) for f in alone}
    assert {(1, "require-concurrent-index-creation"), (2, "column-type-rewrite")} <= found


def test_with_dsn_a_table_an_earlier_file_created_is_live_with_or_without_the_database(
        online: Any, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    for name, sql in REPRO.items():
        write(tmp_path, name, sql)
    change = str(tmp_path / "002_change.sql")
    # Not in the database yet (001 is pending): still not new for 002.
    codes = {f["code"] for f in _json(online, str(tmp_path)) if f["file"] == change}
    assert {"require-concurrent-index-creation", "column-type-rewrite"} <= codes
    db.execute(REPRO["001_create.sql"])
    db.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 3000) g")
    together = [f for f in _json(online, str(tmp_path)) if f["file"] == change]
    assert together == _json(online, change)
    by_code = {f["code"]: f["message"] for f in together}
    assert "t (~3k rows, " in by_code["require-concurrent-index-creation"]
    assert "int4 -> int8" in by_code["column-type-rewrite"]  # the current type, from the catalog


def test_server_version_decides_add_column_default_rule(online: Any, db: psycopg.Connection[Any],
                                                        tmp_path: Path) -> None:
    create_users(db, 10)
    path = write(tmp_path, "m.sql", "SET lock_timeout = '2s';\n"
                                    "ALTER TABLE users ADD COLUMN IF NOT EXISTS v boolean\n"
                                    "  NOT NULL DEFAULT false;\n")
    assert online("lint", path).code == 0  # the test server is >= 11: constant default is free
    r = online("lint", "--pg-version", "10", path)
    assert r.code == 9 and "add-column-volatile-default" in r.out


def test_volatility_lists_agree_with_the_servers_pg_proc(db: psycopg.Connection[Any]) -> None:
    rows = db.execute("SELECT proname, max(provolatile::text) FROM pg_proc"
                      " WHERE proname = ANY(%s) GROUP BY proname",
                      [sorted(VOLATILE | NOT_VOLATILE)]).fetchall()
    actual = dict(rows)
    assert actual, "no built-in function found"
    wrong_volatile = {n for n in VOLATILE if n in actual and actual[n] != "v"}
    wrong_stable = {n for n in NOT_VOLATILE if n in actual and actual[n] == "v"}
    assert wrong_volatile == set() and wrong_stable == set()
