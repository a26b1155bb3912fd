"""Backfills on a partitioned table walk leaf by leaf, each leaf with its own checkpoint.

``online backfill``, ``add-column --backfill`` and ``set-not-null --backfill``
on the partitioned ``events`` (tests/support/partitioned.py), with an
application writer going through the parent the whole time; every write it
saw committed is checked row by row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import spawn_online
from tests.support.chaos import replay, start_writer
from tests.support.online_load import crash, wait_for
from tests.support.partitioned import (
    ROWS,
    WRITER,
    check_writer,
    create_events,
    initial_rows,
    leaves,
    rows,
    run_while_writing,
)
from tests.support.writer import WriterSpec

LOCK_TIMEOUT = "500"
# Writes only note (inserts set hits too): the backfill's hits = hits + 1 is checked exactly.
NOTE_WRITER = WriterSpec(table="events", insert_columns=("note", "hits"), update_columns=("note",),
                         int_columns=("hits",))



def _backfill_steps(db: psycopg.Connection[Any]) -> list[str]:
    (plan,) = db.execute("SELECT plan FROM pgonline.jobs ORDER BY id DESC LIMIT 1").fetchone()
    return [s["id"] for s in plan["steps"] if s.get("backfill")]


def test_backfill_resumed_after_a_crash_continues_in_its_leaf_and_updates_every_row_once(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, NOTE_WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=31, rate=150)
    try:
        proc = spawn_online(["backfill", "events", "--set", "hits = hits + 1", "--batch-size", "50",
                             "--min-batch-size", "50", "--max-batch-size", "50",
                             "--sleep-ms", "10", "--lock-timeout", LOCK_TIMEOUT], dsn)
        # Killed in the middle of a leaf after earlier leaves are done.
        wait_for(db, "SELECT to_regclass('pgonline.checkpoints') IS NOT NULL")
        wait_for(db, "SELECT EXISTS (SELECT 1 FROM pgonline.checkpoints WHERE step_id ="
                     " 'backfill-p6' AND batches > 2 AND NOT finished)")
        crash(proc, db)
        done = dict(db.execute("SELECT step_id, status FROM pgonline.steps").fetchall())
        assert done["backfill-p3"] == "done" and done["backfill-p6"] == "running", done
        # online status totals over every leaf, not the first leaf's walk.
        st = online("status", "1", "--format", "json")
        assert st.code == 0, st.err
        job = json.loads(st.out)
        assert ROWS * 0.3 < job["rows_done"] < job["rows_total"], job
        assert abs(job["rows_total"] - ROWS) < ROWS * 0.2, job
        assert 25 < job["percent"] < 95, job
        r = online("resume", "1", "--lock-timeout", LOCK_TIMEOUT)
    finally:
        writer.stop()
    assert r.code == 0, r.err
    steps = _backfill_steps(db)
    assert len(steps) == len(leaves(db)) == 6
    expected = check_writer(db, writer, ("note",), min_writes=0)
    actual = rows(db)
    # Every original row still there was incremented exactly once (none twice
    # after the resume, none skipped).
    wrong = [i for i in expected if i <= ROWS and actual[i]["hits"] != i + 1]
    assert wrong == [], wrong[:5]


def test_add_column_backfill_fills_every_leaf_and_the_fill_trigger_covers_writes(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=32, rate=200)
    try:
        r, during = run_while_writing(
            writer, online, "add-column", "events", "score", "bigint", "--backfill", "hits::bigint * 2",
            "--not-null", "--default", "0", "--batch-size", "200", "--lock-timeout",
            LOCK_TIMEOUT)
        assert during > 5, during
    finally:
        writer.stop()
    assert r.code == 0, r.err
    assert len(_backfill_steps(db)) == 6
    check_writer(db, writer, min_writes=0)
    assert db.execute("SELECT count(*) FROM events WHERE score IS NULL").fetchone() == (0,)
    # Original rows the application never touched got the backfill value.
    untouched = db.execute("SELECT count(*) FROM events WHERE id <= %s AND note = 'n' || id"
                           " AND score <> hits::bigint * 2", [ROWS]).fetchone()
    assert untouched == (0,)
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone() == (0,)


def test_set_not_null_backfill_on_a_partitioned_table(db, dsn, online, tmp_path: Path):
    create_events(db)
    db.execute("UPDATE events SET note = NULL WHERE id % 7 = 0")
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=33, rate=200)
    try:
        r, during = run_while_writing(writer, online, "set-not-null", "events", "note",
                                      "--backfill", "'filled ' || id", "--batch-size", "200",
                                      "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during
    finally:
        writer.stop()
    assert r.code == 0, r.err
    assert len(_backfill_steps(db)) == 6
    (plan,) = db.execute("SELECT plan FROM pgonline.jobs").fetchone()
    ids = [s["id"] for s in plan["steps"]]
    # The constraint is validated on each leaf, then on the parent (no rescan).
    leaf_validates = [i for i in ids if i.startswith("validate-p")]
    assert len(leaf_validates) == 6
    assert ids.index(leaf_validates[-1]) + 1 == ids.index(
        "validate-not-null" if "validate-not-null" in ids else "validate-check")
    expected, report = replay({i: {**v, "note": None if i % 7 == 0 else v["note"]}
                               for i, v in initial_rows().items()}, [writer])
    assert report.errors == [] and report.missing == []
    actual = rows(db)
    for i, row in expected.items():
        want = row["note"] if row["note"] is not None else f"filled {i}"
        assert actual[i]["note"] == want, (i, row, actual[i])
    assert db.execute("SELECT bool_and(attnotnull) FROM pg_attribute WHERE attname = 'note'"
                      " AND attrelid IN (SELECT relid FROM pg_partition_tree('events'))"
                      ).fetchone() == (True,)
