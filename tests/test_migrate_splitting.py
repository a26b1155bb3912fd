"""Statement splitting and transaction classification with pglast (no regular expressions)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgonline.errors import MigrationError
from pgonline.migrations.splitting import parse_text

P = Path("007_x.sql")

SEED_TRIGGER = """-- Migration: 006_add_user_photos
BEGIN;

CREATE OR REPLACE FUNCTION update_user_photos_updated_at()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = CURRENT_TIMESTAMP;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER trigger_user_photos_updated_at
BEFORE UPDATE ON user_photos
FOR EACH ROW
EXECUTE FUNCTION update_user_photos_updated_at();

COMMIT;
"""


def test_dollar_quoted_plpgsql_body_is_one_statement_and_begin_commit_are_removed():
    pf = parse_text(SEED_TRIGGER, P)
    assert [s.kind for s in pf.statements] == ["CreateFunctionStmt", "CreateTrigStmt"]
    body = pf.statements[0].text
    assert body.startswith("CREATE OR REPLACE FUNCTION") and body.endswith("LANGUAGE plpgsql")
    assert "RETURN NEW;\nEND;\n$$" in body
    assert pf.transactional
    assert pf.position(pf.statements[1].offset) == "007_x.sql:12:1"


def test_semicolons_in_strings_comments_and_tagged_dollar_quotes_do_not_split():
    text = ("INSERT INTO t VALUES ('a;b'); -- c; d\n"
            "/* e; f */ SELECT $fn$ x; y $fn$;\n"
            "DO $$ BEGIN PERFORM 1; END $$;")
    pf = parse_text(text, P)
    assert [s.text for s in pf.statements] == [
        "INSERT INTO t VALUES ('a;b')", "SELECT $fn$ x; y $fn$", "DO $$ BEGIN PERFORM 1; END $$"]


@pytest.mark.parametrize(("sql", "reason"), [
    ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
    ("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)", "CREATE INDEX CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
    ("REINDEX INDEX CONCURRENTLY i", "REINDEX CONCURRENTLY"),
    ("REINDEX (CONCURRENTLY) TABLE t", "REINDEX CONCURRENTLY"),
    ("VACUUM (ANALYZE) t", "VACUUM"),
    ("CREATE DATABASE x", "CREATE/DROP DATABASE"),
    ("ALTER TABLE p DETACH PARTITION c CONCURRENTLY", "DETACH PARTITION ... CONCURRENTLY"),
    ("ALTER SYSTEM SET work_mem = '8MB'", "ALTER SYSTEM"),
])
def test_statements_that_cannot_run_in_a_transaction_are_detected(sql, reason):
    pf = parse_text(f"BEGIN;\n{sql};\nCOMMIT;\n", P)
    assert pf.statements[0].no_transaction == reason
    assert not pf.transactional


@pytest.mark.parametrize("sql", [
    "CREATE INDEX i ON t (a)", "ANALYZE t", "REINDEX INDEX i", "DROP INDEX i",
    "ALTER TABLE t ADD COLUMN c int", "CLUSTER t USING i",
    "SELECT 'CREATE INDEX CONCURRENTLY x ON y (z)'",  # only text: a regex would be fooled
])
def test_ordinary_statements_stay_transactional(sql):
    assert parse_text(f"{sql};", P).transactional


def test_alter_type_add_value_is_non_transactional_only_before_postgresql_12():
    text = "ALTER TYPE mood ADD VALUE 'meh';"
    assert not parse_text(text, P, server_major=11).transactional
    assert parse_text(text, P, server_major=12).transactional
    assert not parse_text(text, P).transactional  # unknown server: assume the old rule


def test_syntax_error_is_reported_with_line_and_column():
    text = "SELECT 1;\n\nCREATE TABLE x (\n    a int,\n    CONSTRAINT u UNIQUE (a) WHERE a > 0\n);"
    with pytest.raises(MigrationError) as err:
        parse_text(text, P)
    assert err.value.message.startswith('007_x.sql:5:29: syntax error: syntax error at or near "WHERE"')


def test_syntax_error_column_counts_characters_not_bytes():
    with pytest.raises(MigrationError) as err:
        parse_text("SELECT 'héhé';\nSELECT 2 WHERE;", P)
    assert "007_x.sql:2:15:" in err.value.message


def test_unterminated_dollar_quote_is_a_syntax_error():
    with pytest.raises(MigrationError) as err:
        parse_text("SELECT 1;\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1;", P)
    assert "007_x.sql:2:" in err.value.message and "unterminated dollar-quoted" in err.value.message


def test_leading_begin_options_become_set_transaction():
    pf = parse_text("BEGIN ISOLATION LEVEL REPEATABLE READ, READ WRITE;\nSELECT 1;\nCOMMIT;", P)
    assert pf.set_transaction == "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ WRITE"
    assert parse_text("START TRANSACTION;\nSELECT 1;\nEND;", P).set_transaction is None


@pytest.mark.parametrize("stmt", ["ROLLBACK", "PREPARE TRANSACTION 'x'", "COMMIT PREPARED 'x'"])
def test_transaction_statements_that_would_break_our_transaction_are_refused(stmt):
    with pytest.raises(MigrationError, match="is not allowed in a migration"):
        parse_text(f"BEGIN;\nSELECT 1;\n{stmt};\n", P)


def test_savepoints_are_kept():
    pf = parse_text("SAVEPOINT a;\nSELECT 1;\nRELEASE SAVEPOINT a;", P)
    assert len(pf.statements) == 3 and pf.transactional
