"""The seed's own migrations (001-005 + its 006_add_user_photos) through validate, up, down, test."""

from __future__ import annotations

from tests.support.migration_dirs import copy_seed, fix_seed_006, relations, tracking_rows
from tests.support.tables import schema_snapshot


def test_seed_006_as_written_fails_validate_with_file_line_column(tmp_path, online):
    d = copy_seed(tmp_path)
    r = online("migrate", "validate", str(d), with_dsn=False)
    assert r.code == 8
    # The partial UNIQUE constraint: line 23, column of WHERE.
    assert "006_add_user_photos.sql:23:66: syntax error" in r.err
    assert 'at or near "WHERE"' in r.err


def test_seed_up_stops_on_006_syntax_error_with_nothing_applied(tmp_path, online, db):
    d = copy_seed(tmp_path)
    assert online("migrate", "up", str(d), "5").code == 0
    before = schema_snapshot(db)
    rows_before = tracking_rows(db)
    r = online("migrate", "up", str(d))
    assert r.code == 8, r.err
    assert "006_add_user_photos.sql:23:66: syntax error" in r.err
    assert schema_snapshot(db) == before
    assert tracking_rows(db) == rows_before  # 006 neither applied nor dirty
    assert "user_photos" not in relations(db)


def test_seed_up_on_empty_database_applies_nothing_when_a_later_file_is_broken(tmp_path, online, db):
    d = copy_seed(tmp_path)
    r = online("migrate", "up", str(d))
    assert r.code == 8
    # Every pending file is parsed before the first one runs.
    assert db.execute("SELECT to_regclass('users')").fetchone() == (None,)


def test_corrected_seed_applies_records_and_rolls_back(tmp_path, online, db):
    d = copy_seed(tmp_path)
    fix_seed_006(d)
    assert online("migrate", "validate", str(d), with_dsn=False).code == 0
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "6 migration(s) applied" in r.out
    assert {"user_photos", "unique_primary_photo", "idx_user_photos_primary"} <= relations(db)
    # The trigger function's dollar-quoted body survived splitting.
    db.execute("INSERT INTO user_photos (user_id, photo_url, photo_type, is_primary) "
               "SELECT id, 'https://example.com/p.jpg', 'PROFILE', true FROM users LIMIT 1")
    dup = db.execute("SELECT count(*) FROM pg_trigger WHERE tgname = 'trigger_user_photos_updated_at'")
    assert dup.fetchone() == (1,)
    # The seed's ';' inside a string literal did not split the INSERT.
    assert db.execute("SELECT name FROM users WHERE email = 'alice@example.com'").fetchone() == (
        "Alice; the first",)
    rows = db.execute("SELECT version, dirty, checksum IS NOT NULL, duration_ms IS NOT NULL "
                      "FROM schema_migrations ORDER BY version").fetchall()
    assert [r[0] for r in rows] == ["001_initial_schema", "002_add_auth_fields", "003_seed_data",
                                    "004_add_user_features", "005_expand_partner_preferences",
                                    "006_add_user_photos"]
    assert all(r[1:] == (False, True, True) for r in rows)

    st = online("migrate", "status", str(d))
    assert st.code == 0 and st.out.count(" applied ") == 6
    assert online("migrate", "version", str(d)).out.strip() == "6"

    r = online("migrate", "down", str(d), "1")
    assert r.code == 0, r.err
    assert "user_photos" not in relations(db)
    assert db.execute("SELECT count(*) FROM pg_proc WHERE proname = 'update_user_photos_updated_at'"
                      ).fetchone() == (0,)
    assert online("migrate", "version", str(d)).out.strip() == "5"

    r = online("migrate", "down", str(d), "--all")
    assert r.code == 0, r.err
    assert tracking_rows(db) == []
    assert relations(db) == {"schema_migrations", "schema_migrations_pkey"}


def test_down_requires_a_count_or_all(tmp_path, online):
    d = copy_seed(tmp_path, upto=5)
    r = online("migrate", "down", str(d))
    assert r.code == 2 and "--all" in r.err


def test_migrate_test_passes_on_the_corrected_seed(tmp_path, online, pg_server):
    d = copy_seed(tmp_path)
    fix_seed_006(d)
    r = online("migrate", "test", str(d), "--dsn", pg_server.dsn)
    assert r.code == 0, r.err
    assert "OK: 6 up, 6 down, 6 up again" in r.out


def test_migrate_test_names_what_a_down_left_behind(tmp_path, online, pg_server):
    d = copy_seed(tmp_path)
    fix_seed_006(d)
    # A down that forgets the trigger function (the seed's Option 2 "manual
    # rollback" pitfall): the table goes, the function stays.
    down = d / "006_add_user_photos_down.sql"
    down.write_text(down.read_text().replace(
        "DROP FUNCTION IF EXISTS update_user_photos_updated_at();", ""))
    r = online("migrate", "test", str(d), "--dsn", pg_server.dsn)
    assert r.code == 8
    assert "down of 006_add_user_photos did not restore the schema" in r.err
    assert "left behind: function update_user_photos_updated_at()" in r.err
    # Nothing else is blamed on other versions.
    assert "down of 005" not in r.err


def test_migrate_test_without_dsn_uses_an_embedded_server(tmp_path, online, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    d = copy_seed(tmp_path, upto=5)
    r = online("migrate", "test", str(d), with_dsn=False)
    assert r.code == 0, r.err
    assert "starting an embedded PostgreSQL" in r.out and "OK: 5 up, 5 down, 5 up again" in r.out
