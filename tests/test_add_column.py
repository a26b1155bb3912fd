"""add-column end to end on a real server: fast path, staged path, dry run."""

from __future__ import annotations

from tests.support.tables import columns, create_users, not_null_step_ids


def test_constant_default_not_null_is_one_metadata_only_alter(db, online):
    create_users(db, 2000)
    r = online("add-column", "users", "verified", "bool", "--default", "false", "--not-null")
    assert r.code == 0, r.err
    assert columns(db, "users")["verified"] == ("boolean", True, "false")
    assert db.execute("SELECT count(*) FROM users WHERE verified IS NOT false").fetchone() == (0,)
    steps = db.execute("SELECT step_id, status FROM pgonline.steps").fetchall()
    assert steps == [("add-column", "done")]


def test_volatile_default_is_staged_and_every_row_gets_a_value(db, online):
    create_users(db, 5000)
    r = online("add-column", "users", "token", "uuid", "--default", "gen_random_uuid()",
               "--not-null", "--batch-size", "700")
    assert r.code == 0, r.err
    assert columns(db, "users")["token"] == ("uuid", True, "gen_random_uuid()")
    assert db.execute("SELECT count(DISTINCT token), count(*) FROM users").fetchone() == (5000, 5000)
    steps = [s for (s,) in db.execute(
        "SELECT step_id FROM pgonline.steps ORDER BY ord").fetchall()]
    assert steps == ["add-column", "backfill", "vacuum", *not_null_step_ids(db)]
    # No helper check is left: NOT NULL enforces it.
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname LIKE 'pgonline_nn%'"
                      ).fetchone() == (0,)


def test_backfill_expression_may_use_other_columns(db, online):
    create_users(db, 1500)
    r = online("add-column", "users", "domain", "text", "--backfill", "split_part(email, '@', 2)",
               "--not-null", "--default", "'unknown'")
    assert r.code == 0, r.err
    assert db.execute("SELECT DISTINCT domain FROM users").fetchall() == [("example.com",)]
    db.execute("INSERT INTO users (email) VALUES ('x@y')")
    assert db.execute("SELECT domain FROM users WHERE email = 'x@y'").fetchone() == ("unknown",)


def test_dry_run_prints_steps_with_locks_and_changes_nothing(db, online):
    create_users(db, 10)
    r = online("add-column", "users", "token", "uuid", "--default", "gen_random_uuid()",
               "--not-null", "--dry-run")
    assert r.code == 0, r.err
    assert "[expand] add-column" in r.out and "ACCESS EXCLUSIVE" in r.out
    assert f"[contract] {not_null_step_ids(db)[2]}" in r.out and "SHARE UPDATE EXCLUSIVE" in r.out
    # Every step but the VACUUM after the backfill runs in a transaction.
    assert r.out.count("outside a transaction") == 1
    assert "VACUUM (ANALYZE)" in r.out
    assert "token" not in columns(db, "users")
    r2 = online("plan", "add-column", "users", "token", "uuid", "--default", "gen_random_uuid()")
    assert r2.code == 0 and "[backfill] backfill" in r2.out


def test_percent_signs_in_identifiers_and_expressions_stay_literal(db, online):
    db.execute('CREATE TABLE "we%sird" ("k%b" int PRIMARY KEY, email text)')
    db.execute("""INSERT INTO "we%sird" SELECT g, 'u' || g || '@x' FROM generate_series(1, 900) g""")
    r = online("add-column", '"we%sird"', '"v%s"', "int", "--backfill",
               """("k%b" % 7) + (CASE WHEN email LIKE '%@%' THEN 100 ELSE 0 END)""",
               "--not-null", "--batch-size", "100", "--max-batch-size", "100")
    assert r.code == 0, r.err
    assert db.execute('SELECT count(*) FROM "we%sird" WHERE "v%s" = "k%b" % 7 + 100').fetchone() == (900,)
