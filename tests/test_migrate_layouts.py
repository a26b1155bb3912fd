"""golang-migrate histories as they are (dots in titles, no downs, timestamp versions,
dialect files), and golang-migrate's `goto` / `redo`, and `create --layout --seq/--timestamp`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pgonline.migrations import discovery
from pgonline.migrations.discovery import Style
from pgonline.migrations.template import plan_new
from tests.support.migration_dirs import tracking_rows, write_chain


def _write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def test_titles_with_dots_and_no_downs_are_accepted_and_applied(tmp_path, online, db):
    d = _write(tmp_path / "m", {
        "0001_init.up.sql": "CREATE TABLE kv (k text PRIMARY KEY, v text);\n",
        "0002_1.7.0_schema.up.sql": "ALTER TABLE kv ADD COLUMN version text;\n",
        "0003_add-index.up.sql": "CREATE INDEX kv_v ON kv (v);\n",
        "0003_add-index.down.sql": "DROP INDEX kv_v;\n",
    })
    r = online("migrate", "validate", str(d), with_dsn=False)
    assert r.code == 0, r.err
    assert "0002_1.7.0_schema.up.sql: no down migration" in r.out
    assert "gap" not in r.out
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert [v for v, _ in tracking_rows(db)] == ["0001_init", "0002_1.7.0_schema",
                                                 "0003_add-index"]


def test_timestamp_versions_and_dialect_files_need_no_memory_and_pick_postgres(tmp_path, online,
                                                                             db):
    base = 20210101000000000000  # 20 digits, as ory/popx writes them
    files: dict[str, str] = {}
    for i in range(30):
        v = base + i * 1_000_003
        files[f"{v}_step_{i}.postgres.up.sql"] = f"CREATE TABLE t_{i} (id int);\n"
        files[f"{v}_step_{i}.mysql.up.sql"] = "THIS IS NOT POSTGRESQL;\n"
        files[f"{v}_step_{i}.up.sql"] = "SELECT 'the dialect-less fallback';\n"
        files[f"{v}_step_{i}.postgres.down.sql"] = f"DROP TABLE t_{i};\n"
    files[f"{base + 99_000_000_000}_only_generic.up.sql"] = "CREATE TABLE generic (id int);\n"
    d = _write(tmp_path / "m", files)
    t0 = time.monotonic()
    migrations, problems = discovery.discover(d)
    assert time.monotonic() - t0 < 2.0
    assert problems == []
    assert len(migrations) == 31
    assert all(".postgres." in m.up.name for m in migrations[:30])
    assert migrations[-1].up.name.endswith("_only_generic.up.sql")  # the fallback
    assert not any("gap" in w for w in discovery.warnings(migrations))
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
                      " AND tablename LIKE 't\\_%'").fetchone() == (30,)
    assert db.execute("SELECT to_regclass('generic')").fetchone() != (None,)


def test_versions_sort_numerically_not_as_text(tmp_path):
    d = _write(tmp_path / "m", {"9_a.up.sql": "SELECT 1;", "10_b.up.sql": "SELECT 1;",
                                "100_c.up.sql": "SELECT 1;"})
    migrations, problems = discovery.discover(d)
    assert problems == []
    assert [m.number for m in migrations] == [9, 10, 100]


def test_goto_moves_up_and_down_to_exactly_that_version(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 6)
    r = online("migrate", "goto", str(d), "4")
    assert r.code == 0, r.err
    assert len(tracking_rows(db)) == 4
    r = online("migrate", "goto", str(d), "2")
    assert r.code == 0, r.err
    assert [v for v, _ in tracking_rows(db)] == ["001_create_items", "002_add_column_2"]
    assert online("migrate", "goto", str(d), "6").code == 0
    assert len(tracking_rows(db)) == 6
    assert online("migrate", "goto", str(d), "0").code == 0
    assert tracking_rows(db) == []
    r = online("migrate", "goto", str(d), "9")
    assert r.code == 8 and "no migration numbered 9" in r.err


def test_redo_rolls_back_the_newest_and_applies_it_again(tmp_path, online, db):
    d = write_chain(tmp_path / "m", 3)
    assert online("migrate", "up", str(d)).code == 0
    query = "SELECT applied_at FROM schema_migrations WHERE version = '003_add_column_3'"
    first = db.execute(query).fetchone()
    time.sleep(0.01)
    r = online("migrate", "redo", str(d))
    assert r.code == 0, r.err
    assert "redone 003_add_column_3" in r.out
    assert len(tracking_rows(db)) == 3
    again = db.execute(query).fetchone()
    assert first is not None and again is not None and again[0] > first[0]


def test_create_with_timestamps_and_layouts(tmp_path):
    now = datetime(2026, 12, 2, 13, 14, 15, tzinfo=UTC)
    new = plan_new(tmp_path, "add users", style=Style.GOLANG, timestamp=True, today=now)
    assert new.up.name == "20261202131415_add_users.up.sql"
    assert new.down.name == "20261202131415_add_users.down.sql"
    new.up.write_text(new.up_text)
    new.down.write_text(new.down_text)
    # The directory's versioning is followed, and not mixed.
    nxt = plan_new(tmp_path, "more", today=now)
    assert nxt.up.name == "20261202131416_more.up.sql"  # same second: still after the last
    with pytest.raises(Exception, match="by timestamp; --seq would mix"):
        plan_new(tmp_path, "x", timestamp=False, today=now)


def test_create_cli_takes_layout_and_seq(tmp_path, online):
    r = online("migrate", "create", str(tmp_path), "first", "--layout", "golang-migrate", "--seq",
               with_dsn=False)
    assert r.code == 0, r.err
    assert (tmp_path / "000001_first.up.sql").exists()
    r = online("migrate", "create", str(tmp_path), "second", "--timestamp", with_dsn=False)
    assert r.code == 2 and "in sequence; --timestamp would mix" in r.err


def test_dbmate_files_run_their_up_section_and_roll_back_with_their_down_section(tmp_path,
                                                                                online, db):
    d = _write(tmp_path / "m", {
        "20240101120000_create_notes.sql": "-- migrate:up\nCREATE TABLE notes (id int);\n\n"
                                           "-- migrate:down\nDROP TABLE notes;\n",
        "20240102120000_add_body.sql": "-- migrate:up transaction:false\n"
                                       "ALTER TABLE notes ADD COLUMN body text;\n"
                                       "-- migrate:down\nALTER TABLE notes DROP COLUMN body;\n",
        "20240103120000_no_down.sql": "-- migrate:up\nCREATE TABLE tags (id int);\n",
    })
    r = online("migrate", "validate", str(d), with_dsn=False)
    assert r.code == 0, r.err
    assert "20240103120000_no_down.sql: no down migration" in r.out and "gap" not in r.out
    assert online("migrate", "up", str(d)).code == 0
    assert db.execute("SELECT to_regclass('notes'), to_regclass('tags')").fetchone() == \
        ("notes", "tags")
    r = online("migrate", "down", str(d), "1")
    assert r.code == 8 and "no down migration for 20240103120000_no_down.sql" in r.err
    (d / "20240103120000_no_down.sql").write_text("-- migrate:up\nCREATE TABLE tags (id int);\n"
                                                  "-- migrate:down\nDROP TABLE tags;\n")
    # Adding a down section does not make the applied up "modified".
    assert "modified" not in online("migrate", "status", str(d)).out
    assert online("migrate", "down", str(d), "2").code == 0
    assert db.execute("SELECT to_regclass('tags')").fetchone() == (None,)
    cols = {c for (c,) in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = "
                                     "'notes'::regclass AND attnum > 0 AND NOT attisdropped")}
    assert cols == {"id"}


def test_a_dbmate_syntax_error_points_at_its_line_in_the_file(tmp_path, online, db):
    d = _write(tmp_path / "m", {
        "20240101120000_broken.sql": "-- migrate:up\nCREATE TABLE ok (id int);\nCREATE TABL x;\n"
                                     "-- migrate:down\nDROP TABLE ok;\n",
    })
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "20240101120000_broken.sql:3:" in r.err, r.err


def test_flyway_versions_sort_part_by_part_and_repeatables_are_ignored(tmp_path, online, db):
    d = _write(tmp_path / "m", {
        "V1__init.sql": "CREATE TABLE f (id int);\n",
        "V1.1__one.sql": "ALTER TABLE f ADD COLUMN a int;\n",
        "V1.10__ten.sql": "ALTER TABLE f ADD COLUMN b int;\n",
        "U1.10__ten.sql": "ALTER TABLE f DROP COLUMN b;\n",
        "V1_2__two.sql": "ALTER TABLE f ADD COLUMN c int;\n",
        "V2__last.sql": "ALTER TABLE f ADD COLUMN d int;\n",
        "U2__last.sql": "ALTER TABLE f DROP COLUMN d;\n",
        "R__views.sql": "CREATE OR REPLACE VIEW fv AS SELECT 1;\n",
    })
    migrations, problems = discovery.discover(d)
    assert problems == []
    assert [m.version for m in migrations] == ["V1__init", "V1.1__one", "V1.2__two",
                                               "V1.10__ten", "V2__last"]
    warnings = discovery.warnings(migrations, d)
    assert any("R__views.sql: ignored" in w for w in warnings) and not any("gap" in w
                                                                           for w in warnings)
    assert online("migrate", "up", str(d)).code == 0
    assert [c for (c,) in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = "
                                     "'f'::regclass AND attnum > 0 ORDER BY attnum")] == \
        ["id", "a", "c", "b", "d"]
    assert db.execute("SELECT to_regclass('fv')").fetchone() == (None,)
    assert online("migrate", "down", str(d), "2").code == 0  # U2, then U1.10
    r = online("migrate", "down", str(d), "1")
    assert r.code == 8 and "no down migration for V1_2__two.sql" in r.err, r.err
    assert [c for (c,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'f'::regclass AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum")] == ["id", "a", "c"]


def test_layout_forces_one_layout(tmp_path, online):
    d = write_chain(tmp_path / "m", 2)
    r = online("migrate", "validate", str(d), "--layout", "golang-migrate", with_dsn=False)
    assert r.code == 8 and "not a golang-migrate file name" in r.err
    assert online("migrate", "validate", str(d), "--layout", "seed", with_dsn=False).code == 0


def test_goto_and_force_take_a_flyway_version(tmp_path, online, db):
    d = _write(tmp_path / "m", {"V1__init.sql": "CREATE TABLE g (id int);\n",
                                "V1.1__more.sql": "CREATE TABLE g2 (id int);\n",
                                "U1.1__more.sql": "DROP TABLE g2;\n"})
    assert online("migrate", "up", str(d)).code == 0
    r = online("migrate", "goto", str(d), "V1")
    assert r.code == 0, r.err
    assert db.execute("SELECT to_regclass('g2')").fetchone() == (None,)
    assert online("migrate", "force", str(d), "1.1").code == 0
    assert [v for v, _ in tracking_rows(db)] == ["V1.1__more", "V1__init"]
    r = online("migrate", "goto", str(d), "1.5")
    assert r.code == 8 and "no migration numbered 1.5" in r.err


def test_create_writes_dbmate_and_flyway_files_that_validate(tmp_path, online):
    dbmate, flyway = tmp_path / "dbmate", tmp_path / "flyway"
    dbmate.mkdir()
    flyway.mkdir()
    for name in ("first", "second"):
        r = online("migrate", "create", str(dbmate), name, "--layout", "dbmate", with_dsn=False)
        assert r.code == 0, r.err
        r = online("migrate", "create", str(flyway), name, "--layout", "flyway", with_dsn=False)
        assert r.code == 0, r.err
    files = sorted(p.name for p in dbmate.iterdir())
    assert len(files) == 2 and all(f.endswith(("_first.sql", "_second.sql")) for f in files)
    assert "-- migrate:down" in (dbmate / files[0]).read_text()
    assert sorted(p.name for p in flyway.iterdir()) == [
        "U1__first.sql", "U2__second.sql", "V1__first.sql", "V2__second.sql"]
    for d in (dbmate, flyway):
        r = online("migrate", "validate", str(d), with_dsn=False)
        assert r.code == 0 and "no down migration" not in r.out, (d, r.out, r.err)


def test_create_with_a_dialect_writes_postgres_files_and_later_creates_follow_them(tmp_path, online):
    r = online("migrate", "create", str(tmp_path), "first", "--layout", "golang-migrate",
               "--dialect", "postgres", with_dsn=False)
    assert r.code == 0, r.err
    # Without --dialect, the directory's newest migration decides.
    r = online("migrate", "create", str(tmp_path), "second", with_dsn=False)
    assert r.code == 0, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "000001_first.postgres.down.sql", "000001_first.postgres.up.sql",
        "000002_second.postgres.down.sql", "000002_second.postgres.up.sql"]
    # The header names the version, which has no dialect in it.
    assert "-- Migration: 000002_second\n" in (tmp_path / "000002_second.postgres.up.sql").read_text()
    assert [m.version for m in discovery.load(tmp_path)] == ["000001_first", "000002_second"]
    r = online("migrate", "validate", str(tmp_path), with_dsn=False)
    assert r.code == 0 and "no down migration" not in r.out, (r.out, r.err)


def test_create_with_a_dialect_refuses_other_layouts_and_other_databases(tmp_path, online):
    r = online("migrate", "create", str(tmp_path), "first", "--layout", "dbmate", "--dialect", "pg",
               with_dsn=False)
    assert r.code == 2 and "--dialect names golang-migrate files" in r.err
    r = online("migrate", "create", str(tmp_path), "first", "--layout", "golang-migrate",
               "--dialect", "mysql", with_dsn=False)
    assert r.code == 2 and "mysql" in r.err
    assert list(tmp_path.iterdir()) == []
    now = datetime(2026, 12, 2, 13, 14, 15, tzinfo=UTC)
    new = plan_new(tmp_path, "x", style=Style.GOLANG, timestamp=True, today=now, dialect="pg")
    assert (new.up.name, new.down.name) == ("20261202131415_x.pg.up.sql", "20261202131415_x.pg.down.sql")
