"""``migrate up --online``: index, NOT NULL and constraint statements run as pgonline commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import psycopg

from pgonline.connection import SessionSettings
from pgonline.devtools.workload import Workload
from pgonline.engine.backfill import BatchOptions
from pgonline.engine.change import RunContext
from pgonline.engine.executor import ExecOptions
from pgonline.engine.progress import Progress
from pgonline.migrations import rewrite
from pgonline.migrations.runner import Runner, RunnerOptions
from pgonline.migrations.splitting import parse_text
from pgonline.sql.identifiers import QualifiedName
from tests.support.migration_dirs import tracking_rows
from tests.support.tables import columns, create_users, not_null_step_ids, schema_snapshot

ROWS = 3000


def _found(sql_text: str) -> list[rewrite.Rewrite | None]:
    pf = parse_text(sql_text, Path("x.sql"))
    return [rewrite.rewrite_for(s) for s in pf.statements]


def _summary(sql_text: str) -> tuple[str, str] | None:
    (found,) = _found(sql_text)
    return None if found is None else (found.command, found.summary)


def _migration(tmp_path: Path, up: str, *, number: int = 1, d: Path | None = None) -> Path:
    d = d or tmp_path / "m"
    d.mkdir(exist_ok=True)
    (d / f"{number:03d}_change.sql").write_text(up)
    (d / f"{number:03d}_change_down.sql").write_text("SELECT 1;\n")
    return d


def _jobs(db: psycopg.Connection[Any]) -> list[tuple[str, str, list[str]]]:
    if db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,):
        return []
    rows = db.execute("SELECT kind, status, plan FROM pgonline.jobs ORDER BY id").fetchall()
    return [(k, s, [step["id"] for step in p["steps"]]) for k, s, p in rows]


def _plan_sql(db: psycopg.Connection[Any], kind: str) -> list[str]:
    (plan,) = db.execute("SELECT plan FROM pgonline.jobs WHERE kind = %s", [kind]).fetchone() or ()
    return [s["sql"] for s in plan["steps"] if s.get("sql")]


def _constraints(db: psycopg.Connection[Any], table: str) -> dict[str, tuple[str, bool]]:
    # NOT NULL constraints (catalogued from PostgreSQL 18) are checked through columns().
    rows = db.execute("SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                      "WHERE conrelid = %s::regclass AND contype <> 'n'", [table]).fetchall()
    return {n: (d, v) for n, d, v in rows}


def _indexes(db: psycopg.Connection[Any], table: str) -> dict[str, tuple[str, bool]]:
    rows = db.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                      "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
                      [table]).fetchall()
    return {n: (d, v) for n, d, v in rows}


def _error_line(err: str) -> str:
    return next(line for line in err.splitlines() if line.startswith("error:"))


def _user_schema(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """The schema without the tracking tables (a failed run still records its dirty row)."""
    return [r for r in schema_snapshot(db) if "migrations" not in str(r[1])]


def _setup(db: psycopg.Connection[Any]) -> None:
    create_users(db, ROWS)
    db.execute("CREATE TABLE teams (id int PRIMARY KEY, name text)")
    db.execute("INSERT INTO teams SELECT g, 'team ' || g FROM generate_series(1, 10) g")
    db.execute("ALTER TABLE users ADD COLUMN team_id int")
    db.execute("UPDATE users SET team_id = id % 10 + 1 WHERE id % 3 = 0")
    db.execute("CREATE TABLE accounts (id int NOT NULL, owner text)")
    db.execute("INSERT INTO accounts SELECT g, 'o' || g FROM generate_series(1, 500) g")


# -- what each statement becomes (parse only) ----------------------------------------------


def test_each_recognised_statement_maps_to_its_command():
    assert _summary("CREATE UNIQUE INDEX IF NOT EXISTS ux ON s.t USING hash (a) WHERE a > 1") == (
        "add-index", "online add-index s.t a --name ux --unique --using hash --where 'a > 1'")
    assert _summary("CREATE INDEX CONCURRENTLY ON t (a, lower(b))") == (
        "add-index", "online add-index t a --expression 'lower(b)'")
    assert _summary('DROP INDEX IF EXISTS s."Odd"') == ("drop-index", 'online drop-index s."Odd"')
    assert _summary("ALTER TABLE t ALTER COLUMN c SET NOT NULL") == (
        "set-not-null", "online set-not-null t c")
    assert _summary("ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0)") == (
        "add-check", "online add-check t pos 'a > 0'")
    assert _summary("ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES r (x, y) ON DELETE CASCADE") == (
        "add-foreign-key", "online add-foreign-key t a b --references 'r(x, y)' --on-delete 'cascade'")
    assert _summary("ALTER TABLE t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES s.r") == (
        "add-foreign-key", "online add-foreign-key t a --references 's.r' --name fk")
    assert _summary("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a, b)") == (
        "add-unique", "online add-unique t a b --name u")
    assert _summary("ALTER TABLE t ADD PRIMARY KEY (id)") == (
        "add-primary-key", "online add-primary-key t id")


def test_index_definitions_the_command_cannot_spell_fall_back_to_a_concurrent_statement():
    for statement, expected in [
        ("CREATE INDEX i ON t (a text_pattern_ops)",
         "CREATE INDEX CONCURRENTLY i ON t (a text_pattern_ops)"),
        ('CREATE INDEX i ON t (a COLLATE "C")',
         'CREATE INDEX CONCURRENTLY i ON t (a COLLATE "C")'),
        ("CREATE INDEX ON t (a DESC NULLS LAST)",
         "CREATE INDEX CONCURRENTLY t_a_idx ON t (a DESC NULLS LAST)"),
        ("CREATE UNIQUE INDEX i ON t (a) INCLUDE (b)",
         "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a) INCLUDE (b)"),
        ("CREATE UNIQUE INDEX CONCURRENTLY i ON t (a) NULLS NOT DISTINCT",
         "CREATE UNIQUE INDEX CONCURRENTLY i ON t (a) NULLS NOT DISTINCT"),
        ("CREATE INDEX i ON t (lower(b), a)",  # expression before a column: key order
         "CREATE INDEX CONCURRENTLY i ON t ((lower(b)), a)"),
        ("CREATE INDEX i ON t (a) WITH (fillfactor = 70)",
         "CREATE INDEX CONCURRENTLY i ON t (a) WITH (fillfactor = 70)"),
    ]:
        found = _summary(statement)
        assert found is not None and found[0] == "create-index", statement
        assert found[1] == expected


def test_statements_without_an_exact_online_equivalent_run_as_written():
    for statement in [
        "CREATE INDEX i ON ONLY t (a)",  # catalog-only on a partitioned parent
        "DROP INDEX i CASCADE",
        "DROP INDEX a, b",
        "DROP INDEX CONCURRENTLY i",
        "ALTER TABLE t ALTER COLUMN c SET NOT NULL, ALTER COLUMN d SET NOT NULL",
        "ALTER TABLE ONLY t ALTER COLUMN c SET NOT NULL",
        "ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0) NOT VALID",
        "ALTER TABLE t ADD CHECK (a > 0)",  # unnamed: PostgreSQL names it from its columns
        "ALTER TABLE t ADD CONSTRAINT pos CHECK (a > 0) NO INHERIT",
        "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES r NOT VALID",
        "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES r DEFERRABLE INITIALLY DEFERRED",
        "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES r ON UPDATE CASCADE",
        "ALTER TABLE t ADD FOREIGN KEY (a) REFERENCES r MATCH FULL",
        "ALTER TABLE t ADD FOREIGN KEY (a, b) REFERENCES r ON DELETE SET NULL (b)",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX ux",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a) INCLUDE (b)",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE NULLS NOT DISTINCT (a)",
        "ALTER TABLE t ADD PRIMARY KEY (id) WITH (fillfactor = 70)",
        "ALTER TABLE t ADD CONSTRAINT ex EXCLUDE USING gist (a WITH =)",
    ]:
        assert _summary(statement) is None, statement


def test_statements_on_tables_created_earlier_in_the_run_are_not_rewritten():
    scope = rewrite.RewriteScope()
    first = parse_text(
        "CREATE TABLE photos (id int, user_id int, url text);\n"
        "CREATE INDEX photos_user_idx ON photos (user_id);\n"
        "ALTER TABLE public.photos ADD CONSTRAINT photos_user_fk FOREIGN KEY (user_id) "
        "REFERENCES users;\n"
        "ALTER TABLE photos ALTER COLUMN url SET NOT NULL;\n"
        "CREATE TABLE IF NOT EXISTS users (id int);\n"  # may be an old, big table
        "CREATE INDEX users_email_idx ON users (email);\n", Path("001_a.sql"))
    assert [r is not None for r in scope.rewrites(first.statements)] == [
        False, False, False, False, False, True]
    # The next file of the same run still sees photos (and its index) as new.
    second = parse_text("DROP INDEX photos_user_idx;\nALTER TABLE photos ADD PRIMARY KEY (id);\n"
                        "DROP INDEX users_email_idx;\n", Path("002_b.sql"))
    assert [r is not None for r in scope.rewrites(second.statements)] == [False, False, True]


# -- against the server ---------------------------------------------------------------------


def test_each_rewrite_runs_as_its_job_and_reaches_the_written_schema(tmp_path, online, db):
    _setup(db)
    d = _migration(tmp_path, """
BEGIN;
CREATE INDEX users_team_idx ON users (team_id);
CREATE UNIQUE INDEX CONCURRENTLY users_lower_email_key ON users (lower(email));
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_hits_nonneg CHECK (hits >= 0);
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE users ADD FOREIGN KEY (team_id) REFERENCES teams (id) ON DELETE SET NULL;
ALTER TABLE accounts ADD PRIMARY KEY (id);
DROP INDEX users_team_idx;
DROP INDEX IF EXISTS no_such_index;
ALTER TABLE IF EXISTS no_such_table ALTER COLUMN c SET NOT NULL;
ALTER TABLE IF EXISTS no_such_table ADD COLUMN c int;
COMMIT;
""")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert _jobs(db) == [
        ("add-index", "done", ["create-index"]),
        ("add-index", "done", ["create-index"]),
        ("set-not-null", "done", not_null_step_ids(db)),
        ("add-check", "done", ["add-constraint", "validate"]),
        ("add-unique", "done", ["create-index", "add-constraint"]),
        ("add-foreign-key", "done", ["add-constraint", "validate"]),
        ("add-primary-key", "done", ["create-index", "add-constraint"]),
        ("drop-index", "done", ["drop-index"]),
    ]
    assert "index \"no_such_index\" does not exist: skipped (IF EXISTS)" in r.out
    assert r.out.count('table "no_such_table" does not exist: skipped (IF EXISTS)') == 2
    assert _plan_sql(db, "drop-index") == [
        'DROP INDEX CONCURRENTLY IF EXISTS "public"."users_team_idx"']

    idx = _indexes(db, "users")
    assert "users_team_idx" not in idx
    assert idx["users_lower_email_key"] == (
        "CREATE UNIQUE INDEX users_lower_email_key ON public.users USING btree (lower(email))", True)
    assert columns(db, "users")["email"][1] is True
    cons = _constraints(db, "users")
    assert cons["users_hits_nonneg"] == ("CHECK ((hits >= 0))", True)
    assert cons["users_email_key"] == ("UNIQUE (email)", True)
    assert cons["users_team_id_fkey"] == (
        "FOREIGN KEY (team_id) REFERENCES teams(id) ON DELETE SET NULL", True)
    # set-not-null's helper CHECK is gone: only the constraints the file declares remain.
    assert set(cons) == {"users_pkey", "users_hits_nonneg", "users_email_key", "users_team_id_fkey"}
    assert _constraints(db, "accounts")["accounts_pkey"] == ("PRIMARY KEY (id)", True)
    assert tracking_rows(db) == [("001_change", False)]


def test_if_not_exists_on_an_existing_valid_index_is_nothing_to_do(tmp_path, online, db):
    create_users(db, 200)
    db.execute("CREATE INDEX users_email_idx ON users (email)")
    d = _migration(tmp_path, "CREATE INDEX IF NOT EXISTS users_email_idx ON users (email);\n"
                   "CREATE INDEX IF NOT EXISTS users_p_idx ON users (email text_pattern_ops);\n"
                   "CREATE INDEX IF NOT EXISTS users_p_idx ON users (email text_pattern_ops);\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert r.out.count("already exists: skipped (IF NOT EXISTS)") == 2
    assert [k for k, _, _ in _jobs(db)] == ["create-index"]
    assert _indexes(db, "users")["users_p_idx"] == (
        "CREATE INDEX users_p_idx ON public.users USING btree (email text_pattern_ops)", True)


def test_unsupported_index_shapes_are_built_concurrently_as_one_journaled_step(tmp_path, online, db):
    create_users(db, 500)
    d = _migration(tmp_path, "CREATE INDEX ON users (created_at DESC);\n"
                   "CREATE UNIQUE INDEX users_email_incl ON users (email) INCLUDE (hits);\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert [(k, s, steps) for k, s, steps in _jobs(db)] == [
        ("create-index", "done", ["create-index"])] * 2
    plans = db.execute("SELECT plan FROM pgonline.jobs ORDER BY id").fetchall()
    steps = [p["steps"][0] for (p,) in plans]
    assert [s["sql"] for s in steps] == [
        "CREATE INDEX CONCURRENTLY users_created_at_idx ON users (created_at DESC)",
        "CREATE UNIQUE INDEX CONCURRENTLY users_email_incl ON users (email) "
        "INCLUDE (hits)"]
    assert all(s["transactional"] is False and s["done_if"] and s["cleanup_sql"] for s in steps)
    idx = _indexes(db, "users")
    assert idx["users_created_at_idx"] == (
        "CREATE INDEX users_created_at_idx ON public.users USING btree (created_at DESC)", True)
    assert idx["users_email_incl"][1] is True


def test_a_multi_command_alter_runs_as_written_in_one_transaction(tmp_path, online, db):
    create_users(db, 200)
    d = _migration(tmp_path, "ALTER TABLE users ALTER COLUMN email SET NOT NULL,"
                   " ADD CONSTRAINT users_hits_nonneg CHECK (hits >= 0);\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert "(one transaction)" in r.out
    assert _jobs(db) == []
    assert columns(db, "users")["email"][1] is True


def test_a_table_created_in_the_same_file_is_changed_as_written_in_one_transaction(
        tmp_path, online, db):
    create_users(db, 200)
    d = _migration(tmp_path, """
BEGIN;
CREATE TABLE user_photos (id bigserial, user_id bigint, url text);
CREATE INDEX user_photos_user_idx ON user_photos (user_id);
ALTER TABLE user_photos ADD PRIMARY KEY (id);
ALTER TABLE user_photos ADD CONSTRAINT user_photos_user_fk FOREIGN KEY (user_id) REFERENCES users;
ALTER TABLE user_photos ALTER COLUMN url SET NOT NULL;
ALTER TABLE user_photos ADD CONSTRAINT url_not_empty CHECK (url <> '');
COMMIT;
""")
    dry = online("migrate", "up", str(d), "--online", "--dry-run")
    assert dry.code == 0, dry.err
    assert "in one transaction (6 statement(s))" in dry.out
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert "(one transaction)" in r.out
    assert _jobs(db) == []
    assert set(_constraints(db, "user_photos")) == {
        "user_photos_pkey", "user_photos_user_fk", "url_not_empty"}
    assert columns(db, "user_photos")["url"][1] is True


def test_dry_run_names_the_command_each_statement_becomes(tmp_path, online, db):
    _setup(db)
    d = _migration(tmp_path, "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
                   "ALTER TABLE users ADD FOREIGN KEY (team_id) REFERENCES teams;\n"
                   "CREATE INDEX users_c ON users (created_at DESC);\n")
    before = schema_snapshot(db)
    r = online("migrate", "up", str(d), "--online", "--dry-run")
    assert r.code == 0, r.err
    assert "set-not-null rewrite at 001_change.sql:1:1" in r.out
    assert "[set-not-null] online set-not-null users email  <- 001_change.sql:1:1" in r.out
    assert "[add-foreign-key] online add-foreign-key users team_id --references 'teams'" in r.out
    assert ("[create-index] CREATE INDEX CONCURRENTLY users_c ON users "
            "(created_at DESC)") in r.out
    assert "Plan: set-not-null" in r.out and "Plan: add-foreign-key" in r.out
    assert _user_schema(db) == before


def test_dry_run_shows_a_refusal_and_fails_like_the_real_run_would(tmp_path, online, db):
    create_users(db, 300)
    db.execute("UPDATE users SET email = NULL WHERE id <= 3")
    before = _user_schema(db)
    d = _migration(tmp_path, "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n"
                   "ALTER TABLE users ADD CONSTRAINT users_hits_nonneg CHECK (hits >= 0);\n")
    r = online("migrate", "up", str(d), "--online", "--dry-run")
    assert r.code == 4, r.err
    assert "would be refused: 3 rows" in r.out
    assert "Plan: add-check" in r.out  # the statements after it are still listed
    assert "failed at 001_change.sql:1:1: 3 rows" in _error_line(r.err)
    assert _user_schema(db) == before
    assert db.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_null_rows_fail_set_not_null_cleanly_with_file_and_line(tmp_path, online, db):
    create_users(db, 300)
    db.execute("UPDATE users SET email = NULL WHERE id <= 3")
    d = _migration(tmp_path, "-- Migration\nCREATE INDEX users_email_idx ON users (email);\n"
                   "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 4, (r.code, r.err)  # PreflightError
    first = _error_line(r.err)
    assert "failed at 001_change.sql:3:1" in first and "NULL" in first
    assert "statements up to 001_change.sql:2:1 were applied" in r.err
    assert "online migrate force 1" in r.err
    assert columns(db, "users")["email"][1] is False
    assert tracking_rows(db) == [("001_change", True)]
    # Nothing of the refused change was journaled or applied.
    assert [k for k, _, _ in _jobs(db)] == ["add-index"]
    assert _constraints(db, "users").keys() == {"users_pkey"}


def test_duplicates_and_orphans_are_refused_before_anything_changes(tmp_path, online, db):
    _setup(db)
    db.execute("UPDATE users SET email = 'dup@example.com' WHERE id IN (1, 2)")
    db.execute("UPDATE users SET team_id = 999 WHERE id = 5")
    before = _user_schema(db)
    d = _migration(tmp_path, "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 4, r.err
    assert "failed at 001_change.sql:1:1" in r.err and "dup@example.com" in r.err
    assert "no earlier statement of the file was applied" in r.err
    assert _user_schema(db) == before

    # Another directory (and tracking table): the first one is now dirty.
    d2 = _migration(tmp_path, "ALTER TABLE users ADD FOREIGN KEY (team_id) REFERENCES teams;\n",
                    d=tmp_path / "m2")
    r = online("migrate", "up", str(d2), "--online", "--table", "other_migrations")
    assert r.code == 4, r.err
    assert "failed at 001_change.sql:1:1" in r.err and "999" in r.err
    assert _user_schema(db) == before


# -- under application traffic ---------------------------------------------------------------


def _options(dsn: str, out: list[str]) -> RunnerOptions:
    ctx = RunContext(
        dsn=dsn,
        options=ExecOptions(settings=SessionSettings(lock_timeout_ms=500),
                            batch=BatchOptions(initial_size=500, min_size=50, max_size=2000,
                                               sleep_ms=5, max_attempts=30),
                            max_attempts=30),
        progress=Progress(bar=False), out=out.append,
    )
    return RunnerOptions(dsn=dsn, table=QualifiedName(None, "schema_migrations"), online=True,
                         context=ctx, out=out.append, lock_timeout_ms=500)


def test_several_risky_statements_run_online_under_concurrent_writes(tmp_path, dsn, db):
    _setup(db)
    d = _migration(tmp_path, """
BEGIN;
CREATE INDEX users_team_idx ON users (team_id);
ALTER TABLE users ALTER COLUMN email SET NOT NULL;
ALTER TABLE users ADD CONSTRAINT users_hits_nonneg CHECK (hits >= 0);
ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);
ALTER TABLE users ADD CONSTRAINT users_team_fk FOREIGN KEY (team_id) REFERENCES teams (id);
CREATE INDEX users_created_desc ON users (created_at DESC);
DROP INDEX users_team_idx;
COMMENT ON TABLE users IS 'migrated online';
COMMIT;
""")
    out: list[str] = []

    async def scenario() -> Workload:
        async with Workload(dsn, clients=4, max_id=ROWS, write_ratio=0.6) as w:
            await anyio.sleep(0.2)
            async with Runner(d, _options(dsn, out)) as runner:
                assert await runner.up() == ["001_change"]
            await anyio.sleep(0.2)
        return w

    w = anyio.run(scenario)
    assert w.stats.errors == [], w.stats.errors[:3]
    assert w.stats.ops > 100
    hits = dict(db.execute("SELECT id, hits FROM users").fetchall())
    assert all(hits[i] == n for i, n in w.stats.increments.items())
    assert [(k, s) for k, s, _ in _jobs(db)] == [
        ("add-index", "done"), ("set-not-null", "done"), ("add-check", "done"),
        ("add-unique", "done"), ("add-foreign-key", "done"), ("create-index", "done"),
        ("drop-index", "done")]
    cons = _constraints(db, "users")
    assert all(cons[n][1] for n in ("users_hits_nonneg", "users_email_key", "users_team_fk"))
    assert columns(db, "users")["email"][1] is True
    assert "users_team_idx" not in _indexes(db, "users")
    assert _indexes(db, "users")["users_created_desc"][1] is True
    assert db.execute("SELECT obj_description('users'::regclass)").fetchone() == ("migrated online",)
    assert tracking_rows(db) == [("001_change", False)]
