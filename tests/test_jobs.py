"""Journal-facing commands: status, JSON logs, rollback, phases, resume dry-run."""

from __future__ import annotations

import json

from tests.support.tables import columns, create_users, schema_snapshot


def test_json_logs_are_one_object_per_line_with_progress_fields(db, online):
    create_users(db, 3000)
    r = online("--log-format", "json", "add-column", "users", "t", "uuid", "--default",
               "gen_random_uuid()", "--batch-size", "500", "--max-batch-size", "500")
    assert r.code == 0, r.err
    events = [json.loads(line) for line in r.err.splitlines() if line.strip()]
    progress = [e for e in events if e["event"] == "backfill progress"]
    assert progress, events
    last = progress[-1]
    assert last["rows_done"] == 3000 and last["percent"] == 100.0
    assert {"rows_total", "rows_per_s", "eta_s", "batch_size"} <= last.keys()
    assert any(e["event"] == "step done" and e["step"] == "backfill" for e in events)


def test_status_lists_jobs_with_backfill_progress(db, online):
    create_users(db, 1200)
    assert online("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()").code == 0
    r = online("status")
    assert r.code == 0
    assert "add-column" in r.out and "done" in r.out and "1,200/1,200 (100.0%)" in r.out


def test_status_on_a_fresh_database_says_no_jobs(online):
    r = online("status")
    assert r.code == 0 and "no jobs" in r.out


def test_phases_can_be_run_one_at_a_time_with_a_deploy_in_between(db, online):
    create_users(db, 800)
    args = ["add-column", "users", "t", "uuid", "--default", "gen_random_uuid()", "--not-null"]
    r = online(*args, "--phase", "expand")
    assert r.code == 0, r.err
    assert "job 1 paused" in r.out and "next phase: `online resume 1 --phase backfill`" in r.out
    assert columns(db, "users")["t"][1] is False  # nullable until the contract phase
    r = online("resume", "1", "--phase", "backfill")
    assert r.code == 0, r.err
    assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)
    r = online("resume", "1", "--phase", "contract")
    assert r.code == 0, r.err
    assert columns(db, "users")["t"][1] is True
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("done",)


def test_rollback_undoes_the_expand_phase_of_an_unfinished_job(db, online):
    create_users(db, 500)
    before = schema_snapshot(db)
    assert online("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
                  "--not-null", "--phase", "expand").code == 0
    dry = online("rollback", "1", "--dry-run")
    assert dry.code == 0 and "DROP COLUMN IF EXISTS" in dry.out
    r = online("rollback", "1")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("rolled_back",)
    assert online("rollback", "1").code == 6


def test_rollback_of_a_finished_job_needs_confirm(db, online):
    create_users(db, 100)
    before = schema_snapshot(db)
    assert online("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
                  "--not-null").code == 0
    r = online("rollback", "1")
    assert r.code == 6 and "--confirm" in r.err
    r = online("rollback", "1", "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def test_resume_dry_run_prints_the_stored_plan(db, online):
    create_users(db, 100)
    online("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()", "--phase",
           "expand")
    r = online("resume", "1", "--dry-run")
    assert r.code == 0 and "Plan: add-column" in r.out


def test_unknown_job_is_a_job_error(online):
    r = online("resume", "42")
    assert r.code == 6 and "job 42 does not exist" in r.err


def test_a_later_phase_before_its_earlier_phase_is_refused_without_changes_or_a_job(db, online):
    create_users(db, 200)
    before = schema_snapshot(db)
    args = ("add-column", "users", "t", "uuid", "--default", "gen_random_uuid()")
    r = online(*args, "--phase", "backfill")
    assert r.code == 6
    assert "needs earlier steps first (add-column)" in r.err and "--phase expand" in r.err
    assert schema_snapshot(db) == before
    # No job was left behind to hold the table: another change can start at once.
    assert db.execute("SELECT count(*) FROM pgonline.jobs").fetchone() == (0,)
    assert online("add-index", "users", "email").code == 0
    assert online(*args, "--phase", "expand").code == 0
    assert online(*args, "--phase", "backfill").code == 0
    assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)
