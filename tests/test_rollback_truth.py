"""Rollback tells the truth (issue #9, item 6): one case per change kind and phase.

For every change kind, the job is stopped after each of its phases (``--phase``)
and rolled back.  Either the catalog is back to what it was before the change
(columns, constraints, indexes, triggers, functions), and the message and
``online status`` list the undone steps; or a step that cannot be undone has
run, and rollback refuses before undoing anything: exit 6 naming the step,
catalog and job status unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from tests.support.tables import create_users, schema_snapshot

ORDER = ["expand", "backfill", "contract"]


def snapshot(db: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """schema_snapshot() plus user triggers and functions (the sync-trigger machinery)."""
    extra = db.execute(
        """
        SELECT 'trg', tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), ''
          FROM pg_trigger WHERE NOT tgisinternal
        UNION ALL
        SELECT 'fn', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), ''
          FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline')
         ORDER BY 1, 2, 3
        """).fetchall()
    return [*schema_snapshot(db), *extra]


# name: (setup SQL, command, phases, {phase after which rollback refuses: irreversible step})
CASES: dict[str, tuple[str, list[str], list[str], dict[str, str]]] = {
    "add-column-fast": ("", ["add-column", "users", "extra", "integer", "--default", "5"],
                        ["expand"], {}),
    "add-column-staged": ("", ["add-column", "users", "extra", "integer", "--backfill", "hits",
                               "--not-null"], ORDER, {}),
    "add-index": ("", ["add-index", "users", "email"], ["expand"], {}),
    "drop-index": ("CREATE INDEX users_email_idx ON users (email)",
                   ["drop-index", "users_email_idx"], ["contract"], {}),
    "set-not-null": ("UPDATE users SET email = NULL WHERE id < 5",
                     ["set-not-null", "users", "email", "--backfill", "'x'"],
                     ORDER, {}),  # expand installs the fill trigger
    "add-check": ("", ["add-check", "users", "hits_nonneg", "hits >= 0"],
                  ["expand", "contract"], {}),
    "add-foreign-key": ("CREATE TABLE orgs (id bigint PRIMARY KEY); "
                        "ALTER TABLE users ADD COLUMN org_id bigint",
                        ["add-foreign-key", "users", "org_id", "--references", "orgs"],
                        ["expand", "contract"], {}),
    "add-unique": ("", ["add-unique", "users", "email"], ["expand"], {}),
    "add-primary-key": ("CREATE TABLE things (code text NOT NULL); "
                        "INSERT INTO things SELECT 'c' || g FROM generate_series(1, 20) g",
                        ["add-primary-key", "things", "code"], ["expand"], {}),
    "change-type": ("CREATE INDEX users_hits_idx ON users (hits)",
                    ["change-type", "users", "hits", "bigint"], ORDER,
                    {"contract": "drop-old-column"}),
    "change-type-in-place": ("ALTER TABLE users ADD COLUMN nick varchar(10)",
                             ["change-type", "users", "nick", "varchar(20)"], ["expand"],
                             {"expand": "alter-type"}),
    "rename-column": ("", ["rename-column", "users", "email", "mail"], ORDER,
                      {"contract": "drop-old-column"}),
    "drop-column": ("", ["drop-column", "users", "email", "--confirm"], ["contract"],
                    {"contract": "drop-column"}),
    "backfill": ("", ["backfill", "users", "--set", "hits = hits + 1"], ["backfill"],
                 {"backfill": "backfill"}),
}

PARAMS = [pytest.param(name, phase, id=f"{name}-after-{phase}")
          for name, (_, _, phases, _) in CASES.items() for phase in phases]


def _job(db: psycopg.Connection[Any]) -> tuple[int, str, Any]:
    row = db.execute("SELECT id, status, finished_at FROM pgonline.jobs").fetchone()
    assert row is not None
    return row[0], row[1], row[2]


@pytest.mark.parametrize(("name", "phase"), PARAMS)
def test_rollback_after_each_phase_restores_the_catalog_or_refuses_naming_the_step(
        db, online, name, phase):
    setup, command, phases, refusals = CASES[name]
    create_users(db, 50)
    if setup:
        db.execute(setup)
    before = snapshot(db)
    for p in phases[:phases.index(phase) + 1]:
        r = online(*command, "--phase", p)
        assert r.code == 0, (p, r.err)
    job, status, finished_at = _job(db)
    changed = snapshot(db)
    confirm = ["--confirm"] if status == "done" else []
    r = online("--log-format", "json", "rollback", str(job), *confirm)
    refused = next((refusals[p] for p in reversed(phases[:phases.index(phase) + 1])
                    if p in refusals), None)
    if refused is not None:
        assert r.code == 6, r.err
        assert f"step {refused} is irreversible; nothing was undone" in r.err
        assert snapshot(db) == changed
        assert _job(db) == (job, status, finished_at)
        assert db.execute("SELECT count(*) FROM pgonline.steps WHERE status IN "
                          "('undone', 'no_undo')").fetchone() == (0,)
        return
    assert r.code == 0, r.err
    assert snapshot(db) == before
    undone = [s for (s,) in db.execute(
        "SELECT step_id FROM pgonline.steps WHERE status = 'undone' ORDER BY ord DESC")]
    # Nothing undone only when nothing in the catalog had changed (a backfill alone).
    assert undone or changed == before
    listed = f"undone: {', '.join(undone) or 'nothing'}"
    assert listed in r.out
    events = [json.loads(line) for line in r.err.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "job rolled back" and e.get("undone") == undone
               for e in events), r.err
    assert listed in online("status", str(job)).out
    assert _job(db)[1] == "rolled_back"


def test_a_refused_rollback_of_a_finished_rename_leaves_it_done(db, online):
    create_users(db, 50)
    assert online("rename-column", "users", "email", "mail").code == 0  # stops before the cut-over
    assert online("resume", "1", "--phase", "contract").code == 0
    before = _job(db)
    r = online("rollback", "1", "--confirm")
    assert r.code == 6
    assert "step drop-old-column is irreversible" in r.err
    assert "online rename-column" in r.err  # the hint says how to go back
    assert _job(db) == before


def test_a_failed_rollback_keeps_the_finished_status_and_can_be_continued(db, dsn, online):
    create_users(db, 50)
    assert online("add-column", "users", "extra", "integer", "--backfill", "hits",
                  "--not-null").code == 0
    before_status = _job(db)
    # The first undo that needs a lock cannot get it: another session holds the
    # table longer than all of the (few) lock attempts.
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE users IN ACCESS SHARE MODE")
        r = online("rollback", "1", "--confirm", "--lock-timeout", "50", "--max-retries", "1")
        blocker.rollback()
    assert r.code != 0
    assert "rollback of job 1 stopped at step" in r.err and "undone: nothing" in r.err
    status = online("status", "1").out
    assert "done" in status and "failed" not in status
    assert _job(db) == before_status
    r = online("rollback", "1", "--confirm")
    assert r.code == 0, r.err
    assert "extra" not in [c for (c,) in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'users'::regclass "
        "AND NOT attisdropped")]


def test_a_legacy_refusing_undo_is_recognised_as_irreversible() -> None:
    from pgonline.engine.executor import irreversible
    from pgonline.engine.plan import LockLevel, Phase, Step

    legacy = Step(id="cutover", phase=Phase.CONTRACT, description="x",
                  lock=LockLevel.ACCESS_EXCLUSIVE, sql="SELECT 1",
                  undo_sql="DO $pgonline$ BEGIN RAISE EXCEPTION '%', 'pgonline: this step "
                           "cannot be rolled back: run it''s inverse'; END $pgonline$")
    assert irreversible(legacy) == "run it's inverse"
