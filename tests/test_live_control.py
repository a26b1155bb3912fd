"""See and steer a running change: `online status` (text and JSON), `online set`,
`online throttle` / `unthrottle`, and `--postpone-contract`."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest

from tests.conftest import spawn_online
from tests.support.tables import columns, create_users

BIG = 300_000
# A backfill slow enough to watch: small fixed batches with a pause between them.
SLOW_FILL = ["add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null",
             "--batch-size", "500", "--min-batch-size", "500", "--max-batch-size", "500",
             "--sleep-ms", "30"]
STATUS_KEYS = {"id", "kind", "table", "state", "phase", "step", "steps", "rows_done",
               "rows_total", "rows_per_s", "eta_s", "batch_size", "throttled_by", "runner_pid",
               "runner_host", "last_error"}


def _status(online: Any, job: str = "1") -> dict[str, Any]:
    r = online("status", job, "--format", "json")
    assert r.code == 0, r.err
    data: dict[str, Any] = json.loads(r.out)
    return data


def _wait(predicate: Any, proc: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _checkpoint(db: Any) -> tuple[int, int]:
    row = db.execute("SELECT rows_done, batch_size FROM pgonline.checkpoints").fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def test_set_changes_the_batch_size_of_a_running_300k_row_backfill_and_status_shows_it(
        db, dsn, online):
    create_users(db, BIG)
    proc = spawn_online(SLOW_FILL, dsn)
    try:
        _wait(lambda: db.execute("SELECT to_regclass('pgonline.checkpoints')").fetchone()
              != (None,) and _checkpoint(db)[0] >= 5000, proc, "backfill progress")
        first = _status(online)
        assert first.keys() >= STATUS_KEYS
        assert first["state"] == "running" and first["phase"] == "backfill"
        assert first["step"] == "backfill" and first["table"] == '"public"."users"'
        assert first["runner_pid"] == proc.pid and first["runner_host"] == socket.gethostname()
        assert first["batch_size"] == 500 and 0 < first["rows_done"] < first["rows_total"]
        assert first["rows_per_s"] and first["rows_per_s"] > 0 and first["eta_s"] is not None
        assert [s["id"] for s in first["steps"]][:2] == ["add-column", "backfill"]
        assert all({"id", "phase", "status", "started_at", "finished_at"} <= s.keys()
                   for s in first["steps"])
        assert first["steps"][0]["status"] == "done" and first["steps"][0]["finished_at"]
        assert first["steps"][1]["status"] == "running" and first["steps"][1]["started_at"]

        r = online("set", "1", "--batch-size", "777")
        assert r.code == 0, r.err
        assert "applied batch_size=777" in r.out
        # The next batches use it, and status shows it.
        _wait(lambda: _checkpoint(db)[1] == 777, proc, "a batch of 777 rows")
        after = _status(online)
        assert after["batch_size"] == 777 and after["settings"] == {"batch_size": 777}
        # "updated" moves with the checkpoints.
        assert after["updated_at"] > first["updated_at"]
        text = online("status", "1").out
        assert "batch 777" in text and "rows/s" in text and "ETA" in text
        assert f"pid {proc.pid}" in text and "batch_size=777" in text
        listing = online("status").out
        assert "rows/s" in listing

        # Throttled by hand: the backfill stops between batches and says why.
        r = online("throttle", "1")
        assert r.code == 0 and "throttled until `online unthrottle`" in r.out, r.out
        _wait(lambda: _status(online)["state"] == "throttled", proc, "the throttle")
        held = _status(online)
        assert "online throttle" in held["throttled_by"]
        done = _checkpoint(db)[0]
        time.sleep(1.0)
        assert _checkpoint(db)[0] == done
        assert "throttled" in online("jobs").out
        r = online("unthrottle", "1")
        assert r.code == 0, r.err
        _wait(lambda: _checkpoint(db)[0] > done, proc, "the backfill to continue")
        assert _status(online)["throttled_by"] is None

        # Finish quickly.
        r = online("set", "1", "--batch-size", "5000", "--sleep-ms", "0")
        assert r.code == 0, r.err
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "throttled" in err and "throttle ended" in err and "settings applied" in err
    final = _status(online)
    # Everything ran but the fill trigger's drop, which waits for code that writes the
    # column (the plan's gate): a run of all phases stops there.
    assert final["state"] == "paused" and final["step"] == "drop-fill-trigger", final
    # Every step before it is done (their ids differ between PostgreSQL 15 and 18).
    statuses = [s["status"] for s in final["steps"]]
    assert statuses == ["done"] * (len(statuses) - 1) + ["pending"], final["steps"]
    assert final["rows_per_s"] is None and final["eta_s"] is None
    assert db.execute("SELECT count(*) FROM users WHERE token = md5(email)").fetchone() == (BIG,)


def test_settings_given_to_a_paused_job_apply_when_it_resumes(db, online):
    create_users(db, 3000)
    args = ["add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null"]
    assert online(*args, "--phase", "expand").code == 0
    r = online("set", "1", "--batch-size", "123", "--sleep-ms", "0")
    assert r.code == 0 and "not running" in r.out and "its next run applies them" in r.out
    assert _status(online)["settings"] == {"batch_size": 123, "sleep_ms": 0}
    r = online("resume", "1", "--phase", "backfill")
    assert r.code == 0, r.err
    assert _checkpoint(db)[1] == 123
    assert db.execute("SELECT batches FROM pgonline.checkpoints").fetchone() == (25,)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["set", "1"], 2, "give at least one setting"),
    (["set", "1", "--max-lag", "ten"], 2, "invalid --max-lag"),
    (["set", "1", "--batch-size", "0"], 2, "--batch-size"),
    (["throttle", "1", "--for", "soon"], 2, "is not a duration"),
    (["set", "9", "--batch-size", "10"], 6, "job 9 does not exist"),
])
def test_live_control_refuses_bad_input_with_one_line(db, online, args, code, message):
    create_users(db, 10)
    assert online("add-column", "users", "x", "int").code == 0
    r = online(*args)
    assert r.code == code, (r.out, r.err)
    assert message in r.err
    assert "Traceback" not in r.err


def test_control_of_a_finished_job_is_refused(db, online):
    create_users(db, 10)
    assert online("add-column", "users", "x", "int").code == 0
    for args in (["set", "1", "--sleep-ms", "5"], ["throttle", "1"], ["unthrottle", "1"]):
        r = online(*args)
        assert r.code == 6 and "job 1 is done" in r.err, (args, r.err)


def test_a_throttle_for_a_while_ends_by_itself(db, dsn, online):
    create_users(db, 20_000)
    proc = spawn_online(SLOW_FILL, dsn)
    try:
        _wait(lambda: db.execute("SELECT to_regclass('pgonline.checkpoints')").fetchone()
              != (None,) and _checkpoint(db)[0] >= 1000, proc, "backfill progress")
        r = online("throttle", "1", "--for", "1s")
        assert r.code == 0 and "throttled until" in r.out, r.err
        _wait(lambda: _status(online)["state"] == "throttled", proc, "the throttle")
        held = _checkpoint(db)[0]
        _wait(lambda: _checkpoint(db)[0] > held, proc, "the throttle to lift by itself", 15)
        online("set", "1", "--batch-size", "5000", "--sleep-ms", "0")
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0


def test_postpone_contract_waits_for_cutover_until_resumed(db, online):
    create_users(db, 2000)
    r = online("add-column", "users", "token", "text", "--backfill", "md5(email)", "--not-null",
               "--postpone-contract")
    assert r.code == 0, r.err
    assert "waiting for cut-over" in r.out and "online resume 1" in r.out
    st = _status(online)
    assert st["state"] == "waiting for cut-over"
    assert {s["id"]: s["status"] for s in st["steps"]}["backfill"] == "done"
    assert columns(db, "users")["token"][1] is False  # not NOT NULL yet: the cut-over waits
    assert "waiting for cut-over" in online("jobs").out
    # Another change on the table is refused meanwhile (the job holds it).
    assert online("add-column", "users", "y", "int").code == 6
    r = online("resume", "1")
    assert r.code == 0, r.err
    assert columns(db, "users")["token"][1] is True
    # The cut-over ran up to the plan's own gate (the fill trigger stays until code
    # that writes the column is deployed).
    assert _status(online)["step"] == "drop-fill-trigger"


def test_status_watch_ends_with_the_job_and_json_is_one_object(db, online):
    create_users(db, 100)
    assert online("add-column", "users", "x", "int").code == 0
    r = online("status", "1", "--watch", "--interval", "0.1")
    assert r.code == 0 and "state:    done" in r.out
    r = online("status", "1", "--watch", "--format", "json")
    assert r.code == 0 and json.loads(r.out)["state"] == "done"
    r = online("status", "--format", "json")
    assert r.code == 0 and [j["id"] for j in json.loads(r.out)] == [1]


BACKFILL_ONLY = ("--batch-size", "--sleep-ms", "--target-batch-ms", "--batch-timeout",
                 "--max-lag", "--max-active-sessions", "--throttle-query", "--throttle-interval")


@pytest.mark.parametrize("command", [["add-check"], ["add-index"], ["add-unique"],
                                     ["drop-column"], ["drop-index"], ["rollback"],
                                     ["migrate", "create"]])
def test_help_lists_no_backfill_or_throttle_options_where_none_apply(online, command):
    r = online(*command, "--help", with_dsn=False)
    assert r.code == 0, r.err
    assert not [o for o in BACKFILL_ONLY if o in r.out], r.out


@pytest.mark.parametrize("command", [["add-column"], ["change-type"], ["backfill"],
                                     ["rename-column"], ["set-not-null"], ["resume"],
                                     ["migrate", "up"]])
def test_help_lists_the_backfill_options_where_a_backfill_can_run(online, command):
    r = online(*command, "--help", with_dsn=False)
    assert r.code == 0, r.err
    assert all(o in r.out for o in ("--batch-size", "--sleep-ms", "--max-lag")) or \
        command[0] == "migrate", r.out
    assert "--max-lag" in r.out and "--lock-timeout" in r.out


def test_only_commands_with_a_later_contract_phase_offer_to_postpone_it(online):
    assert "--postpone-contract" in online("add-column", "--help", with_dsn=False).out
    assert "--postpone-contract" in online("add-check", "--help", with_dsn=False).out
    assert "--postpone-contract" not in online("drop-index", "--help", with_dsn=False).out
    assert "--parallel-workers" in online("add-index", "--help", with_dsn=False).out
    assert "--parallel-workers" not in online("add-check", "--help", with_dsn=False).out


def test_the_docs_state_the_lock_timeout_default_that_help_shows(online):
    from pathlib import Path

    from pgonline.connection import SessionSettings

    default = SessionSettings().lock_timeout_ms
    root = Path(__file__).resolve().parent.parent
    assert f"(`--lock-timeout`, {default} ms by default)" in \
        (root / "docs" / "migrations.md").read_text(encoding="utf-8")
    assert f"`--lock-timeout MS` ({default})" in (root / "README.md").read_text(encoding="utf-8")
    for command in (["migrate", "up"], ["add-column"], ["resume"]):
        help_text = " ".join(online(*command, "--help", with_dsn=False).out.split())
        assert f"[default: {default}" in help_text.split("--lock-timeout", 1)[1][:300], command


def test_jobs_lists_a_failed_job_with_the_way_to_resume_or_undo_it(db, online):
    create_users(db, 100)
    assert online("backfill", "users", "--set", "hits = 1 / (id - id)").code == 10
    listing = online("jobs").out
    assert "failed" in listing
    assert "job 1 failed (" in listing and "online resume 1" in listing, listing
    st = _status(online)
    assert st["state"] == "failed" and "division by zero" in st["last_error"]
    assert st["next_command"].startswith("online resume 1")
