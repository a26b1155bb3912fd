"""`online migrate adopt`: continue a history golang-migrate, dbmate or Flyway applied."""

from __future__ import annotations

from pathlib import Path

from tests.support.tables import schema_snapshot


def _golang_dir(tmp: Path) -> Path:
    d = tmp / "m"
    d.mkdir()
    for n in range(1, 5):
        (d / f"{n:06d}_t{n}.up.sql").write_text(f"CREATE TABLE t{n} (id int);\n")
        (d / f"{n:06d}_t{n}.down.sql").write_text(f"DROP TABLE t{n};\n")
    return d


def _as_golang_migrate_left_it(db, version: int, dirty: bool = False) -> None:  # type: ignore[no-untyped-def]
    for n in range(1, version + 1):
        db.execute(f"CREATE TABLE t{n} (id int)")
    db.execute("CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY,"
               " dirty boolean NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES (%s, %s)", [version, dirty])


def test_a_golang_migrate_history_is_adopted_and_continued_without_reapplying(tmp_path, online,
                                                                            db):
    d = _golang_dir(tmp_path)
    _as_golang_migrate_left_it(db, 2)
    r = online("migrate", "up", str(d))
    assert r.code == 8 and "golang-migrate's tracking table" in r.err
    assert "online migrate adopt" in r.err
    r = online("migrate", "adopt", str(d))
    assert r.code == 0, r.err
    assert "adopted 2 applied migration(s) from golang-migrate" in r.out
    # golang-migrate's own table is untouched; ours is found by every command.
    assert db.execute("SELECT version, dirty FROM schema_migrations").fetchall() == [(2, False)]
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "2 migration(s) applied" in r.out  # 3 and 4 only: 1 and 2 were not re-run
    assert [v for (v,) in db.execute(
        "SELECT version FROM pgonline_schema_migrations ORDER BY version")] == \
        ["000001_t1", "000002_t2", "000003_t3", "000004_t4"]
    assert "applied" in online("migrate", "status", str(d)).out


def test_a_dirty_golang_migrate_state_is_refused_with_the_fix(tmp_path, online, db):
    d = _golang_dir(tmp_path)
    _as_golang_migrate_left_it(db, 3, dirty=True)
    before = schema_snapshot(db)
    r = online("migrate", "adopt", str(d))
    assert r.code == 8 and "left version 3 dirty" in r.err and "force 3" in r.err
    assert schema_snapshot(db) == before


def test_a_version_without_its_file_is_refused(tmp_path, online, db):
    d = _golang_dir(tmp_path)
    _as_golang_migrate_left_it(db, 4)
    (d / "000004_t4.up.sql").unlink()
    (d / "000004_t4.down.sql").unlink()
    r = online("migrate", "adopt", str(d))
    assert r.code == 8 and "version 4, which has no file" in r.err


def test_a_dbmate_history_is_adopted(tmp_path, online, db):
    d = tmp_path / "m"
    d.mkdir()
    for i, v in enumerate(("20240101120000", "20240102120000", "20240103120000")):
        (d / f"{v}_n{i}.sql").write_text(f"-- migrate:up\nCREATE TABLE n{i} (id int);\n"
                                         f"-- migrate:down\nDROP TABLE n{i};\n")
    db.execute("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)")
    db.execute("INSERT INTO schema_migrations VALUES ('20240101120000'), ('20240102120000')")
    db.execute("CREATE TABLE n0 (id int); CREATE TABLE n1 (id int)")
    assert online("migrate", "up", str(d)).code == 8  # not before adopting
    r = online("migrate", "adopt", str(d))
    assert r.code == 0, r.err
    r = online("migrate", "up", str(d))
    assert r.code == 0 and "1 migration(s) applied" in r.out, r.err
    assert db.execute("SELECT count(*) FROM schema_migrations").fetchone() == (2,)  # dbmate's


def _flyway_history(db, rows: list[tuple[str, str, bool]]) -> None:  # type: ignore[no-untyped-def]
    db.execute("""CREATE TABLE flyway_schema_history (
        installed_rank int PRIMARY KEY, version varchar(50), description varchar(200),
        type varchar(20) NOT NULL, script varchar(1000) NOT NULL, checksum int,
        installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),
        execution_time int NOT NULL, success boolean NOT NULL)""")
    for rank, (version, kind, success) in enumerate(rows, start=1):
        db.execute("INSERT INTO flyway_schema_history VALUES (%s, %s, 'x', %s, 'x.sql', 0,"
                   " 'me', now(), 1, %s)", [rank, version, kind, success])


def test_a_flyway_history_is_adopted_undos_included(tmp_path, online, db):
    d = tmp_path / "m"
    d.mkdir()
    for v in ("1", "1.1", "2"):
        name = v.replace(".", "_")
        (d / f"V{v}__f{name}.sql").write_text(f"CREATE TABLE f{name} (id int);\n")
        (d / f"U{v}__f{name}.sql").write_text(f"DROP TABLE f{name};\n")
    _flyway_history(db, [("1", "SQL", True), ("1.1", "SQL", True), ("2", "SQL", True),
                         ("2", "UNDO_SQL", True)])
    db.execute("CREATE TABLE f1 (id int); CREATE TABLE f1_1 (id int)")
    r = online("migrate", "adopt", str(d))
    assert r.code == 0, r.err
    assert "adopted 2 applied migration(s) from flyway" in r.out
    r = online("migrate", "up", str(d))
    assert r.code == 0 and "1 migration(s) applied" in r.out, r.err
    assert db.execute("SELECT to_regclass('f2')").fetchone() == ("f2",)


def test_a_failed_flyway_run_is_refused_with_the_fix(tmp_path, online, db):
    d = tmp_path / "m"
    d.mkdir()
    (d / "V1__a.sql").write_text("CREATE TABLE a (id int);\n")
    _flyway_history(db, [("1", "SQL", False)])
    r = online("migrate", "adopt", str(d))
    assert r.code == 8 and "failed" in r.err and "flyway repair" in r.err
