"""Each lint rule: a statement it must flag, and a close one it must leave alone (no database)."""

from __future__ import annotations

import pytest

from pgonline.lint import Finding, LintOptions, Severity, lint_texts, rule_catalog

SAFE_PREAMBLE = "SET lock_timeout = '2s';\n"


def lint(sql: str, *, pg: int = 14, name: str = "m.sql", timeout: bool = True) -> list[Finding]:
    text = (SAFE_PREAMBLE if timeout else "") + sql
    return lint_texts([(name, text)], LintOptions(pg_major=pg))


def codes(sql: str, **kw: object) -> list[str]:
    return [f.code for f in lint(sql, **kw)]  # type: ignore[arg-type]


def only(sql: str, code: str, **kw: object) -> Finding:
    found = [f for f in lint(sql, **kw) if f.code == code]  # type: ignore[arg-type]
    assert len(found) == 1, found
    return found[0]


# --- indexes -----------------------------------------------------------------

def test_plain_create_index_on_existing_table_is_flagged() -> None:
    f = only("CREATE INDEX IF NOT EXISTS i ON users (email);", "require-concurrent-index-creation")
    assert f.severity is Severity.ERROR and (f.line, f.column) == (2, 1)


def test_concurrent_index_and_index_on_new_table_are_fine() -> None:
    assert codes("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);") == []
    assert codes("CREATE TABLE IF NOT EXISTS t (a int);\nCREATE INDEX IF NOT EXISTS i ON t (a);") == []


def test_plain_drop_index_is_flagged_and_concurrent_is_not() -> None:
    assert "require-concurrent-index-deletion" in codes("DROP INDEX IF EXISTS i;")
    assert codes("DROP INDEX CONCURRENTLY IF EXISTS i;") == []


def test_concurrently_inside_begin_commit_is_flagged_outside_is_not() -> None:
    sql = "BEGIN;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);\nCOMMIT;"
    assert only(sql, "concurrently-in-transaction").line == 3
    assert codes("BEGIN;\nCOMMIT;\nCREATE INDEX CONCURRENTLY IF NOT EXISTS i ON users (email);") == []


# --- ADD COLUMN ---------------------------------------------------------------

@pytest.mark.parametrize("default", ["random()", "gen_random_uuid()", "clock_timestamp()",
                                     "uuid_generate_v4()", "nextval('s')", "floor(random() * 10)"])
def test_volatile_default_is_flagged_at_the_function_call(default: str) -> None:
    f = only(f"ALTER TABLE users ADD COLUMN IF NOT EXISTS x text DEFAULT {default};",
             "add-column-volatile-default")
    name = default.split("(")[0]
    if name == "floor":
        name = "random"
    assert f.column == len("ALTER TABLE users ADD COLUMN IF NOT EXISTS x text DEFAULT ") + 1 + \
        default.index(name)
    assert "rewrites users" in f.message


@pytest.mark.parametrize("default", ["now()", "CURRENT_TIMESTAMP", "false", "0", "'x'", "NULL",
                                     "'{}'::jsonb", "now() + interval '1 day'"])
def test_constant_and_stable_defaults_are_fine_on_pg11_and_later(default: str) -> None:
    assert codes(f"ALTER TABLE users ADD COLUMN IF NOT EXISTS x text DEFAULT {default};", pg=11) == []


def test_any_default_rewrites_before_pg11() -> None:
    f = only("ALTER TABLE users ADD COLUMN IF NOT EXISTS v boolean NOT NULL DEFAULT false;",
             "add-column-volatile-default", pg=10)
    assert "PostgreSQL 10" in f.message
    assert codes("ALTER TABLE users ADD COLUMN IF NOT EXISTS v boolean DEFAULT NULL;", pg=10) == []


def test_serial_column_is_a_volatile_default() -> None:
    assert "add-column-volatile-default" in codes("ALTER TABLE users ADD COLUMN IF NOT EXISTS n bigserial;")


def test_unknown_function_default_is_only_a_warning() -> None:
    f = only("ALTER TABLE users ADD COLUMN IF NOT EXISTS x int DEFAULT my_func();",
             "add-column-volatile-default")
    assert f.severity is Severity.WARNING and "--dsn" in f.help


def test_volatile_default_on_new_table_is_fine() -> None:
    sql = ("CREATE TABLE IF NOT EXISTS t (a int);\n"
           "ALTER TABLE t ADD COLUMN IF NOT EXISTS u uuid DEFAULT gen_random_uuid();")
    assert codes(sql) == []


def test_not_null_column_without_default_is_flagged() -> None:
    assert "adding-required-column" in codes("ALTER TABLE users ADD COLUMN IF NOT EXISTS x int NOT NULL;")
    assert codes("ALTER TABLE users ADD COLUMN IF NOT EXISTS x int NOT NULL DEFAULT 0;") == []


# --- NOT NULL and constraints -------------------------------------------------------

def test_set_not_null_without_check_is_flagged() -> None:
    f = only("ALTER TABLE users ALTER COLUMN email SET NOT NULL;", "set-not-null-without-check")
    assert "NOT VALID" in f.help


def test_set_not_null_after_validated_check_is_fine() -> None:
    sql = ("ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE users VALIDATE CONSTRAINT c;\n"
           "ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    assert codes(sql) == []


def test_set_not_null_after_unvalidated_check_names_the_constraint_to_validate() -> None:
    sql = ("ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    f = only(sql, "set-not-null-without-check")
    assert "VALIDATE CONSTRAINT c" in f.help and f.line == 3


def test_set_not_null_check_trick_does_not_help_before_pg12() -> None:
    sql = ("ALTER TABLE users ADD CONSTRAINT c CHECK (email IS NOT NULL) NOT VALID;\n"
           "ALTER TABLE users VALIDATE CONSTRAINT c;\n"
           "ALTER TABLE users ALTER COLUMN email SET NOT NULL;")
    assert "set-not-null-without-check" in codes(sql, pg=11)


@pytest.mark.parametrize("constraint", [
    "FOREIGN KEY (org_id) REFERENCES orgs (id)", "CHECK (hits >= 0)",
])
def test_foreign_key_and_check_without_not_valid_are_flagged(constraint: str) -> None:
    f = only(f"ALTER TABLE users ADD CONSTRAINT c {constraint};", "constraint-missing-not-valid")
    assert f.column == len("ALTER TABLE users ADD ") + 1
    assert codes(f"ALTER TABLE users ADD CONSTRAINT c {constraint} NOT VALID;") == []


def test_constraint_on_new_table_is_fine() -> None:
    sql = "CREATE TABLE IF NOT EXISTS t (a int);\nALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);"
    assert codes(sql) == []


@pytest.mark.parametrize("constraint", ["UNIQUE (email)", "PRIMARY KEY (id)"])
def test_unique_and_primary_key_without_using_index_are_flagged(constraint: str) -> None:
    f = only(f"ALTER TABLE users ADD CONSTRAINT c {constraint};", "unique-constraint-without-index")
    assert "CONCURRENTLY" in f.help and "USING INDEX" in f.help


def test_unique_constraint_using_index_is_fine() -> None:
    assert codes("ALTER TABLE users ADD CONSTRAINT c UNIQUE USING INDEX users_email_idx;") == []


# --- column types, renames, drops ---------------------------------------------------

def test_type_change_with_unknown_source_that_rewrites_is_an_error() -> None:
    f = only("ALTER TABLE users ALTER COLUMN id TYPE bigint;", "column-type-rewrite")
    assert f.severity is Severity.ERROR


def test_type_change_to_text_with_unknown_source_is_a_warning() -> None:
    assert only("ALTER TABLE users ALTER COLUMN email TYPE text;",
                "column-type-rewrite").severity is Severity.WARNING


def test_varchar_widening_known_from_the_file_is_fine_narrowing_is_not() -> None:
    add = "ALTER TABLE users ADD COLUMN IF NOT EXISTS nick varchar(50);\n"
    assert codes(add + "ALTER TABLE users ALTER COLUMN nick TYPE varchar(100);") == []
    assert codes(add + "ALTER TABLE users ALTER COLUMN nick TYPE text;") == []
    assert "column-type-rewrite" in codes(add + "ALTER TABLE users ALTER COLUMN nick TYPE varchar(20);")


def test_type_change_with_using_is_flagged() -> None:
    sql = "ALTER TABLE users ADD COLUMN IF NOT EXISTS n varchar(5);\n" \
          "ALTER TABLE users ALTER COLUMN n TYPE varchar(10) USING n::varchar;"
    assert "column-type-rewrite" in codes(sql)


@pytest.mark.parametrize(("sql", "code"), [
    ("ALTER TABLE users RENAME COLUMN email TO mail;", "rename-column"),
    ("ALTER TABLE users RENAME TO accounts;", "rename-table"),
    ("ALTER TABLE users DROP COLUMN IF EXISTS email;", "drop-column"),
    ("DROP TABLE IF EXISTS users;", "drop-table"),
])
def test_renames_and_drops_of_existing_tables_are_flagged(sql: str, code: str) -> None:
    assert code in codes(sql)
    new = "CREATE TABLE IF NOT EXISTS users (id int, email text);\n"
    assert codes(new + sql) == []


def test_renamed_new_table_stays_new() -> None:
    sql = ("CREATE TABLE IF NOT EXISTS t (a int);\nALTER TABLE t RENAME TO t2;\n"
           "CREATE INDEX IF NOT EXISTS i ON t2 (a);")
    assert codes(sql) == []


# --- lock_timeout -------------------------------------------------------------

def test_blocking_ddl_without_lock_timeout_is_flagged_once_per_file() -> None:
    sql = ("ALTER TABLE users ADD COLUMN IF NOT EXISTS a int;\n"
           "ALTER TABLE users ADD COLUMN IF NOT EXISTS b int;")
    found = [f for f in lint(sql, timeout=False) if f.code == "missing-lock-timeout"]
    assert [(f.line, f.column) for f in found] == [(1, 1)]


@pytest.mark.parametrize("setting", ["SET lock_timeout = '2s';", "SET lock_timeout TO 2000;",
                                     "SELECT set_config('lock_timeout', '2s', false);"])
def test_lock_timeout_set_before_the_ddl_satisfies_the_rule(setting: str) -> None:
    sql = f"{setting}\nALTER TABLE users ADD COLUMN IF NOT EXISTS a int;"
    assert codes(sql, timeout=False) == []


@pytest.mark.parametrize("setting", ["SET lock_timeout = 0;", "SET lock_timeout = '2s';\nRESET lock_timeout;",
                                     "BEGIN;\nSET LOCAL lock_timeout = '2s';\nCOMMIT;"])
def test_disabled_reset_or_expired_local_lock_timeout_does_not_count(setting: str) -> None:
    sql = f"{setting}\nALTER TABLE users ADD COLUMN IF NOT EXISTS a int;"
    assert "missing-lock-timeout" in codes(sql, timeout=False)


def test_new_table_with_foreign_key_to_existing_table_needs_lock_timeout() -> None:
    sql = "CREATE TABLE IF NOT EXISTS photos (id int, user_id int REFERENCES users (id));"
    f = only(sql, "missing-lock-timeout", timeout=False)
    assert "users" in f.message and "SHARE ROW EXCLUSIVE" in f.message
    assert codes("CREATE TABLE IF NOT EXISTS photos (id int);", timeout=False) == []


@pytest.mark.parametrize(("sql", "lock", "blocked"), [
    ("ALTER TABLE orders ADD CONSTRAINT o_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;",
     "SHARE ROW EXCLUSIVE (referenced by a new foreign key) on users", "all writes of users"),
    ("ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;", "ACCESS EXCLUSIVE on orders",
     "all reads and writes of orders"),
    ("CREATE INDEX IF NOT EXISTS o_user ON orders (user_id);",
     "SHARE (blocks writes while the index builds) on orders", "all writes of orders"),
    ("DROP INDEX IF EXISTS o_user;", "ACCESS EXCLUSIVE on the table of index o_user",
     "all reads and writes of its table"),
])
def test_missing_lock_timeout_names_the_lock_and_what_queues_behind_it(sql: str, lock: str,
                                                                       blocked: str) -> None:
    message = only(sql, "missing-lock-timeout", timeout=False).message
    assert f"takes {lock};" in message and f"{blocked} queue behind it" in message


def test_add_foreign_key_alone_takes_share_row_exclusive_on_its_own_table_too() -> None:
    from pglast import parse_sql

    from pgonline.lint.locks import blocking_locks, target_lock

    node = parse_sql("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id)")[0].stmt
    assert [(str(lock.ref), lock.mode) for lock in blocking_locks(node)] == [
        ("users", "SHARE ROW EXCLUSIVE"), ("orders", "SHARE ROW EXCLUSIVE")]
    both = parse_sql("ALTER TABLE orders ADD FOREIGN KEY (user_id) REFERENCES users (id), "
                     "ADD COLUMN n int")[0].stmt
    lock = target_lock(both)
    assert lock is not None and lock.mode == "ACCESS EXCLUSIVE"  # the strongest sub-command wins


# --- idempotency, DML --------------------------------------------------------------

def test_create_without_if_not_exists_and_drop_without_if_exists_are_warnings() -> None:
    for sql in ("CREATE TABLE t (a int);", "CREATE TABLE IF NOT EXISTS t (a int);\nCREATE INDEX i ON t (a);",
                "DROP INDEX CONCURRENTLY i;", "ALTER TABLE users ADD COLUMN a int;"):
        f = only(sql, "non-idempotent")
        assert f.severity is Severity.WARNING
    assert codes("CREATE TABLE IF NOT EXISTS t (a int);") == []


def test_non_idempotent_statements_inside_a_transaction_are_fine() -> None:
    assert codes("BEGIN;\nCREATE TABLE t (a int);\nCOMMIT;") == []


def test_update_without_where_on_existing_table_is_flagged() -> None:
    assert "update-without-where" in codes("UPDATE users SET hits = 0;")
    assert codes("UPDATE users SET hits = 0 WHERE id < 1000;") == []
    assert codes("CREATE TABLE IF NOT EXISTS t (a int);\nUPDATE t SET a = 0;") == []


# --- syntax errors and suppressions -------------------------------------------------------

def test_update_limit_is_a_syntax_error_with_batching_help() -> None:
    f = only("UPDATE users SET verified = false WHERE verified IS NULL LIMIT 10000;", "syntax-error")
    assert (f.line, f.column) == (2, len("UPDATE users SET verified = false WHERE verified IS NULL ") + 1)
    assert "no UPDATE ... LIMIT" in f.message and "SELECT id FROM users" in f.help


def test_statements_after_a_syntax_error_are_still_linted() -> None:
    sql = "SELEC 1;\nCREATE INDEX IF NOT EXISTS i ON users (email);"
    assert codes(sql) == ["syntax-error", "require-concurrent-index-creation"]


def test_unterminated_string_is_reported_and_earlier_statements_linted() -> None:
    sql = "CREATE INDEX IF NOT EXISTS i ON users (email);\nSELECT 'oops;"
    found = lint(sql)
    assert [f.code for f in found] == ["require-concurrent-index-creation", "syntax-error"]
    assert (found[1].line, found[1].column) == (3, 8)


def test_ignore_comment_on_the_line_before_suppresses_that_statement_only() -> None:
    sql = ("-- pgonline:ignore drop-column\nALTER TABLE users DROP COLUMN IF EXISTS a;\n"
           "ALTER TABLE users DROP COLUMN IF EXISTS b;")
    found = [f for f in lint(sql) if f.code == "drop-column"]
    assert [f.line for f in found] == [4]


def test_ignore_file_comment_suppresses_everywhere() -> None:
    sql = "-- pgonline:ignore-file drop-table\nDROP TABLE IF EXISTS a;\nDROP TABLE IF EXISTS b;"
    assert codes(sql) == []


def test_ignore_with_unknown_code_is_reported() -> None:
    f = only("-- pgonline:ignore drop-colum\nALTER TABLE users DROP COLUMN IF EXISTS a;", "invalid-ignore")
    assert "drop-colum" in f.message and f.line == 2


def test_every_code_has_a_severity_summary_help_and_a_docs_entry() -> None:
    from pathlib import Path

    docs = (Path(__file__).parent.parent / "docs" / "lint.md").read_text()
    for code, entry in rule_catalog().items():
        assert code == code.lower() and " " not in code
        assert entry.summary and entry.help
        assert f"### `{code}`" in docs, f"docs/lint.md lacks a section for {code}"


def test_psql_meta_commands_are_skipped_and_the_rest_is_linted() -> None:
    sql = "\\set ON_ERROR_STOP on\nCREATE INDEX IF NOT EXISTS i ON users (email);\n\\echo done\n"
    assert [(f.code, f.line) for f in lint(sql)] == [("require-concurrent-index-creation", 3)]


def test_begin_atomic_body_is_one_statement_when_the_file_has_a_syntax_error() -> None:
    sql = ("CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT CASE WHEN true THEN 1 END;\n"
           "  SELECT 2;\nEND;\nSELEC 1;\nUPDATE users SET hits = 0;")
    assert [(f.code, f.line) for f in lint(sql)] == [("syntax-error", 7), ("update-without-where", 8)]


def test_positions_are_characters_on_crlf_and_non_ascii_lines() -> None:
    sql = ("-- café ☕\r\nCREATE INDEX IF NOT EXISTS i ON users (email);\r\n"
           "  UPDATE users SET a = 'é' LIMIT 1;")
    found = lint(sql)
    assert [(f.code, f.line, f.column) for f in found] == [
        ("require-concurrent-index-creation", 3, 1), ("syntax-error", 4, 28)]


def test_dropping_an_index_built_on_a_new_table_is_fine() -> None:
    sql = ("CREATE TABLE IF NOT EXISTS t (a int);\nCREATE INDEX IF NOT EXISTS t_a ON t (a);\n"
           "DROP INDEX IF EXISTS t_a;")
    assert codes(sql, timeout=False) == []


# --- newness ends with the transaction (and the file) that created the table --------

def test_a_table_stops_being_new_when_its_transaction_commits() -> None:
    sql = ("BEGIN;\nCREATE TABLE t (id int PRIMARY KEY, a int);\nCREATE INDEX t_a ON t (a);\nCOMMIT;\n"
           "BEGIN;\nCREATE INDEX t_id_a ON t (id, a);\nALTER TABLE t ALTER COLUMN a TYPE bigint;\nCOMMIT;\n")
    found = [(f.code, f.line) for f in lint(sql)]
    assert found == [("require-concurrent-index-creation", 7), ("column-type-rewrite", 8)]
    # What the first transaction said about the columns stays true after it: the
    # type change is judged against the known int4, not "current type unknown".
    assert "int4 -> int8" in only(sql, "column-type-rewrite").message


def test_a_table_created_without_explicit_transactions_stays_new_for_the_whole_file() -> None:
    sql = ("CREATE TABLE t (id int PRIMARY KEY, a int);\nCREATE INDEX t_a ON t (a);\n"
           "ALTER TABLE t ALTER COLUMN a TYPE bigint;\n")
    assert codes(sql) == ["non-idempotent", "non-idempotent"]


def test_a_table_created_in_a_rolled_back_transaction_is_not_new_afterwards() -> None:
    sql = ("BEGIN;\nCREATE TABLE t (a int);\nROLLBACK;\nCREATE INDEX IF NOT EXISTS t_a ON t (a);\n")
    assert codes(sql) == ["require-concurrent-index-creation"]


def test_an_index_on_a_committed_new_table_is_an_existing_index_after_the_commit() -> None:
    sql = ("BEGIN;\nCREATE TABLE t (a int);\nCREATE INDEX t_a ON t (a);\nCOMMIT;\n"
           "DROP INDEX IF EXISTS t_a;\n")
    assert codes(sql) == ["require-concurrent-index-deletion"]


def test_a_table_created_by_an_earlier_file_is_not_new() -> None:
    files = [("001_t.sql", "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY, a int);\n"),
             ("002_t.sql", SAFE_PREAMBLE + "CREATE INDEX IF NOT EXISTS t_a ON t (a);\n"
                                           "ALTER TABLE t ALTER COLUMN a TYPE bigint;\n")]
    found = lint_texts(files, LintOptions(pg_major=14))
    assert [(f.path, f.code, f.line) for f in found] == [
        ("002_t.sql", "require-concurrent-index-creation", 2), ("002_t.sql", "column-type-rewrite", 3)]
    assert found == lint_texts(files[1:], LintOptions(pg_major=14))
