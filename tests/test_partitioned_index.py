"""add-index on a partitioned table: per-leaf CONCURRENTLY builds attached to an ON ONLY index.

The table (tests/support/partitioned.py) has hash and list sub-partitions, a
plain range partition and a DEFAULT one; an application writer inserts,
updates and deletes through the parent the whole time, and every write it
saw committed is checked row by row afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.conftest import spawn_online
from tests.support.chaos import start_writer
from tests.support.online_load import crash, wait_for
from tests.support.partitioned import (
    ROWS,
    WRITER,
    check_writer,
    create_events,
    leaves,
    partition_tables,
    run_while_writing,
)
from tests.support.tables import schema_snapshot

LOCK_TIMEOUT = "500"


def _pieces(db: psycopg.Connection[Any], index: str) -> dict[str, tuple[str, bool]]:
    """Every table of the partition tree → (its index in ``index``'s tree, valid)."""
    return {str(r[0]): (str(r[1]), bool(r[2])) for r in db.execute(
        "SELECT x.indrelid::regclass::text, x.indexrelid::regclass::text, x.indisvalid"
        "  FROM pg_partition_tree(%s::regclass) i JOIN pg_index x ON x.indexrelid = i.relid",
        [index])}




def test_index_is_built_leaf_by_leaf_under_writes_and_becomes_valid(db, dsn, online,
                                                                    tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=13, rate=200)
    try:
        r, during = run_while_writing(writer, online, "add-index", "events", "hits", "--where",
                                      "hits >= 0", "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during  # writes committed while the change ran
    finally:
        writer.stop()
    assert r.code == 0, r.err
    pieces = _pieces(db, "events_hits_idx")
    # Every table of the tree (root, both sub-partitioned ranges, all five
    # leaves) has its piece, and every piece, the root's included, is valid.
    assert set(pieces) == partition_tables(db)
    assert all(valid for _, valid in pieces.values()), pieces
    (definition,) = db.execute("SELECT pg_get_indexdef('events_hits_idx'::regclass)").fetchone()
    assert definition == ("CREATE INDEX events_hits_idx ON ONLY public.events USING btree (hits)"
                          " WHERE (hits >= 0)")
    assert all(len(name) <= 63 for name, _ in pieces.values())
    # The planner uses it through the parent.
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(str(r[0]) for r in db.execute(
        "EXPLAIN (COSTS OFF) SELECT * FROM events WHERE hits = 5"))
    assert "events_r3_events_hits_idx" in plan, plan
    check_writer(db, writer)


def test_crash_mid_leaf_resumes_that_leaf_and_a_partition_created_meanwhile_gets_its_piece(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=7, rate=150)
    try:
        with psycopg.connect(dsn) as old:
            # An open snapshot: each CREATE INDEX CONCURRENTLY waits for it at the end
            # of its build, with its leaf's piece still INVALID.
            old.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            old.execute("SELECT 1")
            proc = spawn_online(["add-index", "events", "note", "--lock-timeout", "60000"], dsn)
            wait_for(db, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name"
                         " = 'pgonline' AND query LIKE 'CREATE INDEX CONCURRENTLY%'"
                         " AND wait_event_type = 'Lock')")
            # The parent's ON ONLY indexes exist now: PostgreSQL gives a new partition
            # its own piece, attached, without our help.
            db.execute("CREATE TABLE events_r2_c PARTITION OF events_r2 FOR VALUES IN ('c')")
            crash(proc, db)
            old.rollback()
        invalid = db.execute("SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid ="
                             " x.indexrelid WHERE NOT x.indisvalid AND c.relkind = 'i'").fetchone()
        assert invalid == (1,)  # the killed build's leftover on its leaf
        r, during = run_while_writing(writer, online, "add-index", "events", "note",
                                      "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during  # writes committed while the change ran
    finally:
        writer.stop()
    assert r.code == 0, r.err
    assert "resumed" in r.out
    pieces = _pieces(db, "events_note_idx")
    assert set(pieces) == partition_tables(db) and "events_r2_c" in pieces
    assert all(valid for _, valid in pieces.values()), pieces
    assert db.execute("SELECT count(*) FROM pg_index WHERE NOT indisvalid").fetchone() == (0,)
    assert db.execute("SELECT status FROM pgonline.jobs").fetchall() == [("done",)]
    check_writer(db, writer)


def test_rollback_drops_the_partitioned_index_and_every_piece(db, online):
    create_events(db)
    before = schema_snapshot(db)
    assert online("add-index", "events", "hits", "note").code == 0
    assert len(_pieces(db, "events_hits_note_idx")) == len(partition_tables(db))
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def test_rollback_of_a_half_built_index_drops_attached_and_unattached_pieces(db, dsn, online):
    create_events(db)
    before = schema_snapshot(db)
    with psycopg.connect(dsn) as other:
        # Another session's DDL-level lock on one leaf: its build cannot start, and
        # with one attempt the job stops there, after the leaves before it were
        # built and attached.
        other.execute("LOCK TABLE events_r2_b IN SHARE UPDATE EXCLUSIVE MODE")
        r = online("add-index", "events", "hits", "--lock-timeout", "200", "--max-retries", "1",
                   "--maintenance-wait", "0")
        other.rollback()
    assert r.code == 5, r.err  # resumable: a lock it could not get in time
    pieces = _pieces(db, "events_hits_idx")
    assert "events_def" in pieces and "events_r2_b" not in pieces  # half-built
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def test_unique_index_must_contain_every_levels_partition_key(db, online):
    create_events(db)
    before = schema_snapshot(db)
    r = online("add-index", "events", "id", "--unique")
    assert r.code == 3, (r.out, r.err)
    assert "must include all partition key columns; (id) lacks kind" in r.err
    assert schema_snapshot(db) == before
    r = online("add-index", "events", "kind", "id", "hits", "--unique")
    assert r.code == 0, r.err
    pieces = _pieces(db, "events_kind_id_hits_idx")
    assert all(valid for _, valid in pieces.values()) and len(pieces) == len(partition_tables(db))


def test_leaves_list_is_what_the_plan_walks(db, online):
    create_events(db)
    r = online("add-index", "events", "hits", "--dry-run")
    assert r.code == 0, r.err
    for leaf in leaves(db):
        assert f'CREATE INDEX CONCURRENTLY "{leaf}_events_hits_idx_' in r.out


def test_a_migrations_create_index_on_a_partitioned_table_is_built_piece_by_piece(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    d = tmp_path / "m"
    d.mkdir()
    (d / "001_idx.sql").write_text(
        "CREATE INDEX ON events (hits);\n"  # add-index
        "CREATE INDEX events_note_incl ON events (note DESC) INCLUDE (hits);\n")  # its fallback
    (d / "001_idx_down.sql").write_text("SELECT 1;\n")
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=3, rate=150)
    try:
        r, during = run_while_writing(writer, online, "migrate", "up", str(d), "--online",
                                      "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during  # writes committed while the change ran
    finally:
        writer.stop()
    assert r.code == 0, r.err
    jobs = db.execute("SELECT kind, status FROM pgonline.jobs ORDER BY id").fetchall()
    assert jobs == [("add-index", "done"), ("create-index", "done")]
    for index in ("events_hits_idx", "events_note_incl"):
        pieces = _pieces(db, index)
        assert set(pieces) == partition_tables(db), index
        assert all(valid for _, valid in pieces.values()), pieces
    (leaf_def,) = db.execute(
        "SELECT pg_get_indexdef(x.indexrelid) FROM pg_partition_tree('events_note_incl') i"
        " JOIN pg_index x ON x.indexrelid = i.relid WHERE x.indrelid = 'events_r3'::regclass"
    ).fetchone()
    assert "USING btree (note DESC) INCLUDE (hits)" in leaf_def
    check_writer(db, writer)
