"""Logs: with --log-format json every stderr line is one JSON object (errors and the job's
end included); readable logs carry no `None` noise."""

from __future__ import annotations

import json
from typing import Any

from tests.support.tables import create_users


def _events(err: str) -> list[dict[str, Any]]:
    lines = [line for line in err.splitlines() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    return events


def test_a_finished_job_ends_with_job_finished_carrying_duration_and_rows(db, online):
    create_users(db, 1500)
    r = online("--log-format", "json", "add-column", "users", "t", "text",
               "--backfill", "md5(email)", "--default", "''", "--not-null")
    assert r.code == 0, r.err
    events = _events(r.err)
    last = events[-1]
    assert last["event"] == "job.finished" and last["status"] == "done"
    assert last["rows"] == 1500 and last["duration_s"] > 0 and last["job"] == 1


def test_a_user_error_is_one_json_object_with_its_exit_code(db, online):
    r = online("--log-format", "json", "add-column", "nope", "x", "int")
    assert r.code == 3
    (event,) = _events(r.err)
    assert event["event"] == "error" and event["exit_code"] == 3
    assert "does not exist" in event["error"]


def test_a_usage_error_from_the_command_line_is_json_too(online):
    r = online("--log-format", "json", "add-column", "users")
    assert r.code == 2
    (event,) = _events(r.err)
    assert event["event"] == "error" and event["exit_code"] == 2 and "Missing" in event["error"]


def test_a_failed_job_logs_job_failed_and_the_error_with_its_sqlstate(db, online):
    create_users(db, 100)
    r = online("--log-format", "json", "backfill", "users", "--set", "hits = 1 / (id - id)")
    assert r.code == 10, r.err
    events = _events(r.err)
    failed = next(e for e in events if e["event"] == "job.failed")
    assert failed["sqlstate"] == "22012" and failed["status"] == "failed"
    assert "duration_s" in failed and "rows" in failed
    error = events[-1]
    assert error["event"] == "error" and error["sqlstate"] == "22012"
    assert error["exit_code"] == 10 and error["hint"]


def test_human_logs_leave_out_unset_fields(db, online):
    create_users(db, 1200)
    r = online("add-column", "users", "t", "text", "--backfill", "md5(email)",
               "--default", "''", "--not-null")
    assert r.code == 0, r.err
    assert "backfill progress" in r.err
    assert "=None" not in r.err
    r = online("rollback", "1", "--confirm")
    assert r.code == 0, r.err
    assert "n=0/0" not in r.err and "=None" not in r.err


def test_the_last_backfill_progress_line_counts_batches_and_what_their_checkpoints_cost(
        db, online):
    create_users(db, 1200)
    r = online("--log-format", "json", "backfill", "users", "--set", "hits = hits + 1",
               "--batch-size", "100", "--max-batch-size", "100")
    assert r.code == 0, r.err
    last = [e for e in _events(r.err) if e["event"] == "backfill progress"][-1]
    # 1,200 keys in batches of 100: twelve batches, the last one finding the end.
    assert 12 <= last["batches"] <= 13
    assert 0 < last["checkpoint_ms_per_batch"] < 1000
