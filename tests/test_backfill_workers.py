"""`--workers N`: a backfill's range in N disjoint parts, each walked on its own connection
with its own checkpoint (issue #13 item 4).  See engine/key_ranges.py for why that is safe."""

from __future__ import annotations

import hashlib
import itertools
import signal
import time
from pathlib import Path
from typing import Any

import psycopg

from pgonline.engine.journal import Checkpoint
from pgonline.engine.key_ranges import page_extent, split_keyset, split_pages
from tests.conftest import spawn_online
from tests.support.chaos import (
    TABLE,
    BackfillAt,
    Chaos,
    initial_rows,
    replay,
    row_differences,
    seed_from_env,
    start_writer,
    table_rows,
)
from tests.support.column_changes import SLOW_BATCHES, wait_for_checkpoint
from tests.support.writer import WriterSpec
from tests.test_tid_ranges import create_keyless

ROWS = 6000


def _whole(last: list[str] | None, upper: list[str], done: int = 0) -> Checkpoint:
    return Checkpoint(last_key=last, max_key=upper, rows_done=done, rows_total=1000, batches=3,
                      batch_size=500, finished=False)


def test_key_parts_are_disjoint_cover_the_range_and_keep_what_was_done():
    sample = [[str(k)] for k in range(101, 1001, 3)]
    parts = split_keyset(_whole(["100"], ["1000"], done=100), 4, sample)
    assert len(parts) == 4 and [p.part for p in parts] == [0, 1, 2, 3]
    # Each part starts (exclusively) where the one before it ends.
    assert parts[0].last_key == ["100"] and parts[-1].max_key == ["1000"]
    for before, after in itertools.pairwise(parts):
        assert after.last_key == before.max_key
    uppers = [int(p.max_key[0]) for p in parts if p.max_key]
    assert uppers == sorted(set(uppers))
    # What the single walk had done stays with the first part; the rest is shared.
    assert parts[0].rows_done == 100 and parts[0].batches == 3
    assert all(p.rows_done == 0 and p.batches == 0 for p in parts[1:])
    assert abs(sum(p.rows_total for p in parts) - 1000) <= 4


def test_a_range_with_too_few_distinct_keys_gets_fewer_parts():
    assert len(split_keyset(_whole(None, ["9"]), 4, [["5"], ["5"], ["5"], ["9"]])) == 2
    assert len(split_keyset(_whole(None, ["9"]), 4, [])) == 1
    assert len(split_keyset(_whole(None, ["9"]), 4, [["2"], ["4"], ["6"], ["9"]])) == 3


def test_page_parts_split_the_pages_left_and_remember_their_start():
    cp = Checkpoint(last_key=["40"], max_key=["100", "16384"], rows_done=400, rows_total=1000,
                    batches=2, batch_size=500, finished=False)
    parts = split_pages(cp, 3)
    assert [page_extent(p) for p in parts] == [(0, 60, "16384"), (60, 80, "16384"),
                                                (80, 100, "16384")]
    assert [p.last_key for p in parts] == [["40"], ["60"], ["80"]]
    assert parts[0].rows_done == 400
    assert len(split_pages(cp, 1)) == 1


def _parts(db: psycopg.Connection[Any]) -> list[tuple[int, int, int, bool]]:
    return [(int(r[0]), int(r[1]), int(r[2]), bool(r[3])) for r in db.execute(
        "SELECT part, rows_done, batches, finished FROM pgonline.checkpoints"
        " WHERE step_id = 'backfill' ORDER BY part").fetchall()]


def test_add_column_with_workers_survives_kills_under_live_writes(db, dsn, tmp_path: Path):
    """Kill -9 mid-walk with 3 workers, resume with 2, then 1: every row right, none lost."""
    db.execute(f"""CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, email text NOT NULL,
                                         hits integer NOT NULL DEFAULT 0, note text)""")
    db.execute(f"INSERT INTO {TABLE} (email, hits, note)"  # noqa: S608
               " SELECT 'user' || g || '@example.com', g, 'n' || g FROM generate_series(1, %s) g",
               [ROWS])
    db.execute(f"ANALYZE {TABLE}")
    chaos = Chaos(db, dsn, tmp_path, seed_from_env())
    base = ["add-column", TABLE, "email_md5", "text", "--backfill", "md5(email)", "--not-null"]
    spec = WriterSpec(table=TABLE, insert_columns=("email", "hits", "note"),
                      update_columns=("hits", "note"), email_columns=("email",),
                      int_columns=("hits",))
    with chaos.reporting():
        chaos.writers.append(start_writer(dsn, spec, tmp_path / "w.log", name="app",
                                          partition="0/1", initial_max=ROWS, seed=chaos.seed))
        chaos.stage(base, "expand", [])
        first, second = sorted(chaos.rng.sample(range(ROWS // 10, ROWS * 7 // 10, 100), 2))
        chaos.run_options = ["--workers", "3"]
        chaos.attempt(base, "backfill", BackfillAt(first))
        split = _parts(db)
        assert len(split) == 3, split
        chaos.run_options = ["--workers", "2"]
        chaos.attempt(base, "backfill", BackfillAt(second))
        # The parts are the journal's: a resume with fewer workers walks them all.
        chaos.run_options = []
        chaos.stage(base, "backfill", [])
        assert len(_parts(db)) == 3 and all(p[3] for p in _parts(db)), _parts(db)
        chaos.writers[0].stop()
        chaos.stage(base, "contract", [])
        expected, report = replay(initial_rows(ROWS), chaos.writers)
        assert report.errors == [] and report.missing == [], chaos.summary(report)
        for row in expected.values():
            row["email_md5"] = hashlib.md5(row["email"].encode()).hexdigest()
        cols = ["email", "hits", "note", "email_md5"]
        diff = row_differences(expected, table_rows(db, cols), cols)
        assert diff == {}, f"{diff}\n{chaos.summary(report)}"


def test_a_single_walk_resumed_with_workers_splits_what_is_left(db, dsn):
    db.execute("CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL)")
    db.execute("INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, %s) g", [ROWS])
    db.execute("ANALYZE users")
    command = ["add-column", "users", "token", "text", "--backfill", "md5(email)"]
    proc = spawn_online([*command, *SLOW_BATCHES], dsn)
    wait_for_checkpoint(db, ROWS // 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    [(_, done, batches, _)] = _parts(db)
    proc = spawn_online(["resume", "1", "--workers", "3"], dsn)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "backfill split" in err and "resumed=True" in err, err
    parts = _parts(db)
    assert len(parts) == 3 and all(p[3] for p in parts), parts
    # The first part continued the old walk: its rows and batches count on.
    assert parts[0][1] > done and parts[0][2] > batches, (done, batches, parts)
    assert sum(p[1] for p in parts) == ROWS
    assert db.execute("SELECT count(*) FROM users WHERE token IS DISTINCT FROM md5(email)"
                      ).fetchone() == (0,)


def test_a_pause_stops_every_worker_and_a_resume_continues_each_part(db, dsn, online):
    db.execute("CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL)")
    db.execute("INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, %s) g", [ROWS])
    db.execute("ANALYZE users")
    proc = spawn_online(["add-column", "users", "token", "text", "--backfill", "md5(email)",
                         "--workers", "3", *SLOW_BATCHES], dsn)
    try:
        wait_for_checkpoint(db, ROWS // 4)
        r = online("pause", "1")
        assert r.code == 0, r.err
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("paused",)
    stopped = _parts(db)
    assert len(stopped) == 3 and not any(p[3] for p in stopped), stopped
    time.sleep(0.5)
    assert _parts(db) == stopped  # no worker went on after the pause
    r = online("resume", "1", "--workers", "3")
    assert r.code == 0, r.err
    parts = _parts(db)
    assert all(p[3] for p in parts) and sum(p[1] for p in parts) == ROWS, parts
    # Each part went on from its own checkpoint.
    assert all(after[2] > before[2] for before, after in zip(stopped, parts, strict=True))
    assert db.execute("SELECT count(*) FROM users WHERE token IS DISTINCT FROM md5(email)"
                      ).fetchone() == (0,)


def test_a_table_without_a_key_is_walked_in_page_parts(db, dsn, online):
    create_keyless(db, ROWS)
    r = online("add-column", TABLE, "email_md5", "text", "--backfill", "md5(email)",
               "--workers", "3", "--batch-size", "300", "--max-batch-size", "300")
    assert r.code == 0, r.err
    parts = _parts(db)
    assert len(parts) == 3 and all(p[3] for p in parts), parts
    assert db.execute(f"SELECT count(*) FROM {TABLE}"  # noqa: S608
                      " WHERE email_md5 IS DISTINCT FROM md5(email)").fetchone() == (0,)
