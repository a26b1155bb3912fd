"""``online migrate up --online``: risky statements become staged jobs, under app traffic."""

from __future__ import annotations

import json
from pathlib import Path

import anyio

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
from tests.support.tables import columns, create_users, not_null_step_ids

ROWS = 8000
SEED_EXAMPLE = "ALTER TABLE users ADD COLUMN verified bool NOT NULL DEFAULT random() > 0.5;"


def _dir(tmp_path: Path) -> Path:
    d = tmp_path / "m"
    d.mkdir()
    (d / "001_add_verified.sql").write_text(
        "-- Migration: 001_add_verified\nBEGIN;\n"
        f"{SEED_EXAMPLE}\n"
        "CREATE INDEX users_email_idx ON users (email);\n"
        "COMMENT ON COLUMN users.verified IS 'set at random for existing users';\nCOMMIT;\n")
    (d / "001_add_verified_down.sql").write_text(
        "DROP INDEX users_email_idx;\nALTER TABLE users DROP COLUMN verified;\n")
    return d


def _options(dsn: str, *, online: bool = True, out: list[str] | None = None) -> RunnerOptions:
    sink = out.append if out is not None else (lambda _: None)
    ctx = RunContext(
        dsn=dsn,
        options=ExecOptions(settings=SessionSettings(lock_timeout_ms=500),
                            batch=BatchOptions(initial_size=500, min_size=50, max_size=2000,
                                               sleep_ms=5, max_attempts=30),
                            max_attempts=30),
        progress=Progress(bar=False), out=sink,
    )
    return RunnerOptions(dsn=dsn, table=QualifiedName(None, "schema_migrations"), online=online,
                         context=ctx, out=sink, lock_timeout_ms=500)


def test_recognisers_map_the_seed_example_to_add_column_and_index_to_add_index():
    pf = parse_text(f"{SEED_EXAMPLE}\nCREATE INDEX i ON users (email);\n"
                    "ALTER TABLE users ADD COLUMN c int REFERENCES t (id);\n"
                    "ALTER TABLE ONLY users ADD COLUMN d int;\n", Path("x.sql"))
    found = [rewrite.rewrite_for(s) for s in pf.statements]
    assert found[0] is not None and found[0].command == "add-column"
    assert found[0].summary == "online add-column users verified bool NOT NULL DEFAULT random() > 0.5"
    assert found[1] is not None and found[1].command == "add-index"
    assert found[1].summary == "online add-index users email --name i"
    assert found[2] is None and found[3] is None  # FK and ONLY: run as written
    assert set(rewrite.recognisers()) >= {"add-column", "create-index", "drop-index",
                                          "set-not-null", "add-check", "add-foreign-key",
                                          "add-unique"}


def test_online_add_column_becomes_the_staged_plan_under_concurrent_writes(tmp_path, dsn, db):
    create_users(db, ROWS)
    d = _dir(tmp_path)
    out: list[str] = []

    async def scenario() -> Workload:
        async with Workload(dsn, clients=4, max_id=ROWS, write_ratio=0.6) as w:
            await anyio.sleep(0.2)
            async with Runner(d, _options(dsn, out=out)) as runner:
                assert await runner.up() == ["001_add_verified"]
            await anyio.sleep(0.2)
        return w

    w = anyio.run(scenario)
    assert w.stats.errors == [], w.stats.errors[:3]
    assert w.stats.ops > 100
    hits = dict(db.execute("SELECT id, hits FROM users").fetchall())
    assert all(hits[i] == n for i, n in w.stats.increments.items())

    # The journal holds the staged add-column plan (volatile default → backfill)
    # and the add-index job (CREATE INDEX CONCURRENTLY), each as its own job.
    jobs = db.execute("SELECT kind, status, plan FROM pgonline.jobs ORDER BY id").fetchall()
    assert [(k, s) for k, s, _ in jobs] == [("add-column", "done"), ("add-index", "done")]
    plan = jobs[0][2] if isinstance(jobs[0][2], dict) else json.loads(jobs[0][2])
    assert [s["id"] for s in plan["steps"]] == ["add-column", "backfill", "vacuum",
                                               *not_null_step_ids(db)]
    assert jobs[1][2]["steps"][0]["sql"] == (
        'CREATE INDEX CONCURRENTLY "users_email_idx" ON "public"."users" ("email")')
    assert jobs[1][2]["steps"][0]["transactional"] is False

    assert columns(db, "users")["verified"] == ("boolean", True, "(random() > (0.5)::double precision)")
    assert db.execute("SELECT count(*) FROM users WHERE verified IS NULL").fetchone() == (0,)
    assert db.execute("SELECT count(DISTINCT verified) FROM users").fetchone() == (2,)
    assert db.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_idx'::regclass"
                      ).fetchone() == (True,)
    assert db.execute("SELECT col_description('users'::regclass, 5)").fetchone() == (
        "set at random for existing users",)
    assert tracking_rows(db) == [("001_add_verified", False)]
    assert any("statement by statement" in line and "add-column rewrite at 001_add_verified.sql:3:1"
               in line for line in out)


def test_online_dry_run_prints_the_plans_and_changes_nothing(tmp_path, online, db):
    create_users(db, 100)
    d = _dir(tmp_path)
    r = online("migrate", "up", str(d), "--online", "--dry-run")
    assert r.code == 0, r.err
    assert "[add-column] online add-column" in r.out
    assert "Plan: add-column on public.users" in r.out or 'Plan: add-column on "public"."users"' in r.out
    assert "[backfill] backfill" in r.out
    assert "[add-index] online add-index users email --name users_email_idx" in r.out
    assert "Plan: add-index" in r.out
    assert "verified" not in columns(db, "users")
    assert db.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,)


def test_without_online_the_same_file_is_one_transaction(tmp_path, online, db):
    create_users(db, 100)
    d = _dir(tmp_path)
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert "(one transaction)" in r.out
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)


def test_add_column_if_not_exists_is_skipped_when_the_column_is_there(tmp_path, online, db):
    create_users(db, 100)
    d = tmp_path / "m"
    d.mkdir()
    (d / "001_hits.sql").write_text("ALTER TABLE users ADD COLUMN IF NOT EXISTS hits int;\n")
    (d / "001_hits_down.sql").write_text("SELECT 1;\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert "already exists" in r.out and "skipped (IF NOT EXISTS)" in r.out


def test_online_runs_take_the_throttle_options_of_any_job(tmp_path, online, db):
    create_users(db, 100)
    d = _dir(tmp_path)
    # A throttle query the server rejects is found before the first job changes anything.
    r = online("migrate", "up", str(d), "--online",
               "--throttle-query", "SELECT 1/0", "--throttle-max", "1")
    assert r.code != 0 and "throttle" in r.err, (r.code, r.err)
    assert "verified" not in columns(db, "users")
    r = online("migrate", "up", str(d), "--online", "--throttle-query", "SELECT 1")
    assert r.code == 2 and "--throttle-query and --throttle-max go together" in r.err, r.err


def test_online_backfills_take_workers_and_record_one_checkpoint_per_part(tmp_path, online, db):
    create_users(db, 3000)
    d = tmp_path / "m"
    d.mkdir()
    (d / "001_token.sql").write_text(
        "ALTER TABLE users ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n")
    (d / "001_token_down.sql").write_text("ALTER TABLE users DROP COLUMN token;\n")
    r = online("migrate", "up", str(d), "--online", "--workers", "3", "--sleep-ms", "0")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM users WHERE token IS NULL").fetchone() == (0,)
    parts = db.execute("SELECT count(*) FROM pgonline.checkpoints WHERE step_id = 'backfill'"
                       ).fetchone()
    assert parts == (3,)
