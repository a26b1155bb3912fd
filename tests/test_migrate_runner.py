"""``online migrate up/down/force/status`` on a real server: transactions, locking, tracking."""

from __future__ import annotations

import time

import pytest

from tests.conftest import spawn_online
from tests.support.migration_dirs import (
    copy_seed,
    fix_seed_006,
    relations,
    tracking_rows,
    write_chain,
)
from tests.support.tables import schema_snapshot


def test_twenty_four_migrations_apply_roll_back_and_reapply(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 24)
    empty = schema_snapshot(db)
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "24 migration(s) applied" in r.out
    applied = schema_snapshot(db)
    assert len(tracking_rows(db)) == 24
    assert db.execute("SELECT c23, count(*) FROM items GROUP BY c23").fetchall() == [(23, 50)]

    r = online("migrate", "down", str(d), "--all")
    assert r.code == 0, r.err
    assert "24 migration(s) rolled back" in r.out
    assert tracking_rows(db) == []
    after_down = [row for row in schema_snapshot(db) if row[1] != "schema_migrations"]
    assert after_down == empty

    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert schema_snapshot(db) == applied
    assert online("migrate", "version", str(d)).out.strip() == "24"


def test_up_and_down_take_a_count(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 6)
    assert online("migrate", "up", str(d), "2").code == 0
    assert [v for v, _ in tracking_rows(db)] == ["001_create_items", "002_add_column_2"]
    assert online("migrate", "up", str(d), "3").code == 0
    assert online("migrate", "version", str(d)).out.strip() == "5"
    assert online("migrate", "down", str(d), "2").code == 0
    assert online("migrate", "version", str(d)).out.strip() == "3"


def test_dry_run_changes_nothing_not_even_the_tracking_table(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 5)
    before = schema_snapshot(db)
    r = online("migrate", "up", str(d), "--dry-run")
    assert r.code == 0, r.err
    assert "would apply 001_create_items in one transaction" in r.out
    assert schema_snapshot(db) == before
    assert db.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_two_runners_started_together_never_both_apply(tmp_path, dsn, db):
    d = write_chain(tmp_path / "m", 21)
    # A slow first migration keeps the winner inside its run while the other starts.
    first = d / "001_create_items.sql"
    first.write_text(first.read_text() + "SELECT pg_sleep(1.5);\n")
    procs = [spawn_online(["migrate", "up", str(d), "--lock-wait", "0"], dsn) for _ in range(2)]
    results = [(*p.communicate(timeout=120), p.returncode) for p in procs]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 8], results
    loser_err = next(err for _, err, code in results if code == 8)
    assert "another migration runner holds the lock" in loser_err and "(pid " in loser_err
    assert len(tracking_rows(db)) == 21


def test_second_runner_waits_for_the_first_then_finds_nothing_to_do(tmp_path, dsn, db):
    d = write_chain(tmp_path / "m", 21)
    first = d / "001_create_items.sql"
    first.write_text(first.read_text() + "SELECT pg_sleep(1);\n")
    a = spawn_online(["migrate", "up", str(d)], dsn)
    time.sleep(0.5)
    b = spawn_online(["migrate", "up", str(d), "--lock-wait", "30"], dsn)
    out_a, err_a = a.communicate(timeout=120)
    out_b, err_b = b.communicate(timeout=120)
    assert (a.returncode, b.returncode) == (0, 0), (err_a, err_b)
    outs = sorted([out_a, out_b], key=len)
    assert "nothing to apply" in outs[0]
    assert "21 migration(s) applied" in outs[1]
    assert len(tracking_rows(db)) == 21


def test_edited_applied_file_is_reported_and_up_refuses(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 4)
    assert online("migrate", "up", str(d), "3").code == 0
    edited = d / "002_add_column_2.sql"
    edited.write_text(edited.read_text().replace("DEFAULT 2", "DEFAULT 42"))
    st = online("migrate", "status", str(d))
    assert "002_add_column_2" in st.out and "modified" in st.out
    r = online("migrate", "up", str(d))
    assert r.code == 8
    assert "checksum mismatch" in r.err and "002_add_column_2.sql" in r.err
    assert len(tracking_rows(db)) == 3  # 004 was not applied either


def test_concurrently_file_runs_outside_a_transaction(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 1)
    (d / "002_index_labels.sql").write_text(
        "-- Migration: 002_index_labels\nBEGIN;\n"
        "CREATE INDEX CONCURRENTLY items_label_idx ON items (label);\nCOMMIT;\n")
    (d / "002_index_labels_down.sql").write_text("DROP INDEX CONCURRENTLY items_label_idx;\n")
    v = online("migrate", "validate", str(d), with_dsn=False)
    assert v.code == 0 and "runs statement by statement (CREATE INDEX CONCURRENTLY)" in v.out
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "statement by statement (CREATE INDEX CONCURRENTLY at 002_index_labels.sql:3:1)" in r.out
    assert db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'items_label_idx'::regclass"
                      ).fetchone() == (True,)
    assert tracking_rows(db)[-1] == ("002_index_labels", False)
    r = online("migrate", "down", str(d), "1")
    assert r.code == 0, r.err
    assert "items_label_idx" not in relations(db)


def test_failed_non_transactional_file_is_dirty_until_forced(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 1)
    (d / "002_unique_labels.sql").write_text(
        "INSERT INTO items (label) VALUES ('item 1');\n"
        "CREATE UNIQUE INDEX CONCURRENTLY items_label_key ON items (label);\n")
    (d / "002_unique_labels_down.sql").write_text("DROP INDEX CONCURRENTLY IF EXISTS items_label_key;\n")
    (d / "003_more.sql").write_text("ALTER TABLE items ADD COLUMN note text;\n")
    (d / "003_more_down.sql").write_text("ALTER TABLE items DROP COLUMN note;\n")
    r = online("migrate", "up", str(d))
    assert r.code == 10, r.err
    assert "002_unique_labels.sql:2:1" in r.err and "23505" in r.err
    assert "statements up to 002_unique_labels.sql:1:1 were applied" in r.err
    assert "INVALID index" in r.err and "online migrate force 2" in r.err
    assert tracking_rows(db) == [("001_create_items", False), ("002_unique_labels", True)]
    assert "note" not in {c for (c,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass").fetchall()}

    st = online("migrate", "status", str(d))
    assert "dirty" in st.out and "002_unique_labels.sql:2:1: could not create unique index" in st.out
    assert online("migrate", "version", str(d)).out.strip() == "2 (dirty)"
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "is dirty" in r.err and "force 2" in r.err and "force 1" in r.err

    # The DBA repairs by hand, finishing what 002 meant to do, then records it.
    db.execute("DROP INDEX items_label_key")
    db.execute("DELETE FROM items WHERE id = (SELECT max(id) FROM items)")
    db.execute("CREATE UNIQUE INDEX items_label_key ON items (label)")
    r = online("migrate", "force", str(d), "2")
    assert r.code == 0, r.err
    assert tracking_rows(db) == [("001_create_items", False), ("002_unique_labels", False)]
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert online("migrate", "version", str(d)).out.strip() == "3"


def test_force_back_to_an_earlier_version_removes_later_rows(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 5)
    assert online("migrate", "up", str(d)).code == 0
    r = online("migrate", "force", str(d), "3", "--dry-run")
    assert "would remove 004_add_index_4" in r.out and len(tracking_rows(db)) == 5
    assert online("migrate", "force", str(d), "3").code == 0
    assert [v for v, _ in tracking_rows(db)] == ["001_create_items", "002_add_column_2",
                                                 "003_add_column_3"]
    assert online("migrate", "force", str(d), "0").code == 0
    assert tracking_rows(db) == []
    assert online("migrate", "force", str(d), "9").code == 8


def test_server_error_in_a_transactional_file_points_at_the_line_and_rolls_back(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 1)
    (d / "002_broken.sql").write_text(
        "BEGIN;\nALTER TABLE items ADD COLUMN ok int;\n\nALTER TABLE items\n"
        "    ADD COLUMN bad int REFERENCES missing_table (id);\nCOMMIT;\n")
    (d / "002_broken_down.sql").write_text("ALTER TABLE items DROP COLUMN ok;\n")
    r = online("migrate", "up", str(d))
    assert r.code == 10
    assert "002_broken.sql:" in r.err and "missing_table" in r.err and "42P01" in r.err
    assert "rolled back: nothing from it was applied" in r.err
    assert tracking_rows(db) == [("001_create_items", False)]
    assert "ok" not in {c for (c,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'items'::regclass").fetchall()}


def test_file_begin_isolation_level_is_honoured_inside_our_transaction(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 1)
    (d / "002_iso.sql").write_text(
        "BEGIN ISOLATION LEVEL SERIALIZABLE;\n"
        "CREATE TABLE iso AS SELECT current_setting('transaction_isolation') AS level;\nCOMMIT;\n")
    (d / "002_iso_down.sql").write_text("DROP TABLE iso;\n")
    assert online("migrate", "up", str(d)).code == 0
    assert db.execute("SELECT level FROM iso").fetchone() == ("serializable",)


def test_rollback_statement_in_a_file_is_refused_before_anything_runs(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 1)
    (d / "002_oops.sql").write_text("BEGIN;\nCREATE TABLE x (a int);\nROLLBACK;\n")
    (d / "002_oops_down.sql").write_text("DROP TABLE IF EXISTS x;\n")
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "002_oops.sql:3:1: ROLLBACK is not allowed" in r.err
    assert db.execute("SELECT to_regclass('items')").fetchone() == (None,)


def test_seed_style_tracking_table_is_adopted(tmp_path, online, db):
    d = copy_seed(tmp_path)
    fix_seed_006(d)
    # What the seed's run-migrations.sh leaves behind after 001-003.
    db.execute("CREATE TABLE schema_migrations (version VARCHAR(255) PRIMARY KEY, "
               "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
    for f in sorted(d.glob("00[123]_*.sql")):
        if not f.name.endswith("_down.sql"):
            db.execute(f.read_text())
            db.execute("INSERT INTO schema_migrations (version) VALUES (%s)", [f.stem])
    st = online("migrate", "status", str(d))
    assert st.code == 0 and st.out.count("unverified") == 3 and st.out.count("pending") == 3
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "adopted existing" in r.out and "checksum" in r.out
    assert "3 migration(s) applied" in r.out
    rows = db.execute("SELECT version, checksum IS NULL, dirty FROM schema_migrations "
                      "ORDER BY version").fetchall()
    assert rows[:3] == [("001_initial_schema", True, False), ("002_add_auth_fields", True, False),
                        ("003_seed_data", True, False)]
    assert [r[1] for r in rows[3:]] == [False, False, False]


def test_seed_loop_rows_for_down_files_are_refused(tmp_path, online, db):
    d = copy_seed(tmp_path, upto=5)
    db.execute("CREATE TABLE schema_migrations (version VARCHAR(255) PRIMARY KEY, "
               "applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)")
    db.execute("INSERT INTO schema_migrations (version) VALUES "
               "('001_initial_schema'), ('001_initial_schema_down')")
    r = online("migrate", "up", str(d))
    assert r.code == 8
    assert "001_initial_schema_down" in r.err and "*_down.sql right after its up file" in r.err


def test_golang_migrate_tracking_table_is_not_mistaken_for_ours(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 2)
    db.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL)")
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "golang-migrate" in r.err and "--table" in r.err
    r = online("migrate", "up", str(d), "--table", "pgonline_migrations")
    assert r.code == 0, r.err
    assert len(tracking_rows(db, "pgonline_migrations")) == 2


def test_golang_migrate_naming_up_down_and_create(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 21, golang=True, width=6)
    assert online("migrate", "validate", str(d), with_dsn=False).code == 0
    assert online("migrate", "up", str(d)).code == 0
    assert tracking_rows(db)[0] == ("000001_create_items", False)
    assert online("migrate", "down", str(d), "--all").code == 0
    assert online("migrate", "up", str(d)).code == 0
    r = online("migrate", "create", str(d), "add user photos", with_dsn=False)
    assert r.code == 0, r.err
    assert (d / "000022_add_user_photos.up.sql").exists()
    assert (d / "000022_add_user_photos.down.sql").exists()


def test_create_writes_the_next_pair_with_the_seed_header(tmp_path, online):
    d = copy_seed(tmp_path)
    fix_seed_006(d)
    r = online("migrate", "create", str(d), "create_matches_table", "--author", "Ada",
               "--description", "Matches between users", with_dsn=False)
    assert r.code == 0, r.err
    up = (d / "007_create_matches_table.sql").read_text()
    assert up.startswith("-- Migration: 007_create_matches_table\n"
                         "-- Description: Matches between users\n-- Author: Ada\n-- Date: 20")
    assert (d / "007_create_matches_table_down.sql").read_text().startswith(
        "-- Migration Rollback: 007_create_matches_table")
    assert online("migrate", "validate", str(d), with_dsn=False).code == 0
    r = online("migrate", "create", str(d), "Bad-Name!", with_dsn=False)
    assert r.code == 2 and "snake_case" in r.err


@pytest.mark.parametrize(("files", "message"), [
    (["add_photos.sql"], "missing number"),
    (["6_photos.sql", "6_photos_down.sql"], "not zero-padded"),
    (["006-add-photos.sql"], "use underscores, not dashes"),
    (["006_Add_Photos.sql"], "lower-case snake_case"),
    (["001_a.sql", "001_a_down.sql", "001_b.sql", "001_b_down.sql"], "duplicate number 1"),
    (["001_a_down.sql"], "down migration without an up migration"),
    (["001_a.sql", "001_a_down.sql", "0002_b.sql", "0002_b_down.sql"], "use one width"),
    (["001_a.up.sql", "001_a.down.sql", "002_b.sql", "002_b_down.sql"], "mixed naming styles"),
])
def test_validate_explains_each_naming_mistake(tmp_path, online, files, message):
    for f in files:
        (tmp_path / f).write_text("SELECT 1;\n")
    r = online("migrate", "validate", str(tmp_path), with_dsn=False)
    assert r.code == 8
    assert message in r.err


@pytest.mark.parametrize(("files", "message"), [
    (["001_a.sql", "001_a_down.sql", "003_c.sql", "003_c_down.sql"],
     "gap in the numbering: no migration 002"),
    (["001_a.sql", "001_a_down.sql", "005_e.sql", "005_e_down.sql"],
     "gap in the numbering: no migration 002-004"),
    (["001_a.sql"], "001_a.sql: no down migration (001_a_down.sql)"),
    (["001_a.up.sql"], "001_a.up.sql: no down migration (001_a.down.sql)"),
])
def test_gaps_and_missing_downs_are_warnings_not_refusals(tmp_path, online, files, message):
    for f in files:
        (tmp_path / f).write_text("SELECT 1;\n")
    r = online("migrate", "validate", str(tmp_path), with_dsn=False)
    assert r.code == 0, r.err
    assert f"warning: {message}" in r.out


def test_up_refuses_a_directory_with_naming_problems(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 3)
    (d / "003_Add_Column.sql").write_text("SELECT 1;\n")
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "lower-case snake_case" in r.err
    assert db.execute("SELECT to_regclass('items')").fetchone() == (None,)


def test_a_missing_down_applies_with_a_warning_and_down_past_it_refuses(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 3)
    (d / "002_add_column_2_down.sql").unlink()
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "no down migration (002_add_column_2_down.sql)" in r.err
    assert online("migrate", "down", str(d), "1").code == 0  # 003 has its down
    before = schema_snapshot(db)
    r = online("migrate", "down", str(d), "1")
    assert r.code == 8 and "no down migration for 002_add_column_2.sql" in r.err
    assert schema_snapshot(db) == before  # nothing rolled back
    assert [v for v, _ in tracking_rows(db)] == ["001_create_items", "002_add_column_2"]
