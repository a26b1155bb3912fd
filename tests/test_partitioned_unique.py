"""add-unique and add-primary-key on a partitioned table: per-leaf constraints the parent adopts.

PostgreSQL has no ``ADD CONSTRAINT ... USING INDEX`` on a partitioned table;
each leaf gets its unique index CONCURRENTLY and its own constraint, and the
parent's ``ADD CONSTRAINT`` then attaches them instead of building.  An
application writer runs through the parent the whole time and every write
it saw committed is checked row by row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

from tests.support.chaos import start_writer
from tests.support.partitioned import (
    ROWS,
    WRITER,
    check_writer,
    create_events,
    partition_tables,
    run_while_writing,
)
from tests.support.tables import schema_snapshot

LOCK_TIMEOUT = "500"


def _constraints(db: psycopg.Connection[Any], contype: str) -> dict[str, tuple[str, str | None, bool]]:
    """table → (constraint, its parent constraint, its index valid), for one constraint type."""
    return {str(r[0]): (str(r[1]), r[2], bool(r[3])) for r in db.execute(
        "SELECT c.conrelid::regclass::text, c.conname, p.conname, x.indisvalid"
        "  FROM pg_constraint c LEFT JOIN pg_constraint p ON p.oid = c.conparentid"
        "  JOIN pg_index x ON x.indexrelid = c.conindid"
        " WHERE c.contype = %s AND c.conrelid::regclass::text LIKE 'events%%'", [contype])}




def test_unique_constraint_is_built_per_leaf_and_adopted_by_the_parent_under_writes(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=5, rate=200)
    try:
        r, during = run_while_writing(writer, online, "add-unique", "events", "hits", "id", "kind",
                                      "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during  # writes committed while the change ran
    finally:
        writer.stop()
    assert r.code == 0, r.err
    cons = {t: c for t, c in _constraints(db, "u").items()}
    # Every table of the tree has its constraint, each a child of its parent's,
    # and the root's is the one named on the command line.
    assert set(cons) == partition_tables(db)
    assert cons["events"][:2] == ("events_hits_id_kind_key", None)
    assert cons["events_r1_h0"][1] == cons["events_r1"][0]
    assert cons["events_r1"][1] == "events_hits_id_kind_key"
    assert all(valid for _, _, valid in cons.values())
    (definition,) = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                               " WHERE conname = 'events_hits_id_kind_key'").fetchone()
    assert definition == "UNIQUE (hits, id, kind)"
    # Enforced: a duplicate through the parent fails.
    try:
        db.execute("INSERT INTO events (id, kind, hits) VALUES (5, 'b', 5)")
        raise AssertionError("duplicate accepted")
    except psycopg.errors.UniqueViolation:
        pass
    check_writer(db, writer)


def test_primary_key_on_a_partitioned_table_under_writes(db, dsn, online, tmp_path: Path):
    create_events(db, primary_key=False)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=8, rate=200)
    try:
        r, during = run_while_writing(writer, online, "add-primary-key", "events", "id", "kind",
                                      "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during  # writes committed while the change ran
    finally:
        writer.stop()
    assert r.code == 0, r.err
    cons = _constraints(db, "p")
    assert set(cons) == partition_tables(db) and cons["events"][:2] == ("events_pkey", None)
    assert all(valid for _, _, valid in cons.values())
    check_writer(db, writer)


def test_a_key_without_every_levels_partition_key_is_refused_with_the_reason(db, online):
    create_events(db)
    before = schema_snapshot(db)
    r = online("add-unique", "events", "hits", "id")
    assert r.code == 3, (r.out, r.err)
    assert "must include all partition key columns; (hits, id) lacks kind" in r.err
    assert schema_snapshot(db) == before


def test_rollback_of_a_half_done_unique_constraint_restores_the_schema(db, dsn, online):
    create_events(db)
    before = schema_snapshot(db)
    with psycopg.connect(dsn) as other:
        other.execute("LOCK TABLE events_r3 IN SHARE UPDATE EXCLUSIVE MODE")
        r = online("add-unique", "events", "hits", "id", "kind", "--lock-timeout", "200",
                   "--max-retries", "1", "--maintenance-wait", "0")
        other.rollback()
    assert r.code == 5, r.err
    assert len(_constraints(db, "u")) > 0  # some leaves already constrained
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before
    r = online("add-unique", "events", "hits", "id", "kind")
    assert r.code == 0, r.err
    (job,) = db.execute("SELECT max(id) FROM pgonline.jobs").fetchone()
    assert online("rollback", str(job), "--confirm").code == 0
    assert schema_snapshot(db) == before


def test_a_partition_attached_with_rows_while_the_job_ran_is_refused_before_the_parents_step(
        db, dsn, online):
    create_events(db)
    db.execute("ALTER TABLE events DETACH PARTITION events_r3")  # planned without it
    with psycopg.connect(dsn) as other:
        other.execute("LOCK TABLE events_r2_b IN SHARE UPDATE EXCLUSIVE MODE")  # the last leaf
        r = online("add-unique", "events", "hits", "id", "kind", "--lock-timeout", "200",
                   "--max-retries", "1", "--maintenance-wait", "0")
        other.rollback()
    assert r.code == 5, r.err
    db.execute("ALTER TABLE events ATTACH PARTITION events_r3 FOR VALUES FROM (2001) TO (3001)")
    r = online("add-unique", "events", "hits", "id", "kind")
    assert r.code != 0
    assert "partitions with rows but no unique constraint on the key: events_r3" in r.err
    # Nothing was built on the parent under its lock.
    assert "events" not in _constraints(db, "u")


def test_a_migrations_add_constraint_unique_on_a_partitioned_table_runs_per_leaf(
        db, online, tmp_path: Path):
    create_events(db)
    d = tmp_path / "m"
    d.mkdir()
    (d / "001_key.sql").write_text("ALTER TABLE events ADD CONSTRAINT ev_u UNIQUE (hits, id, kind);\n")
    (d / "001_key_down.sql").write_text("SELECT 1;\n")
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert db.execute("SELECT kind, status FROM pgonline.jobs").fetchall() == [("add-unique", "done")]
    cons = _constraints(db, "u")
    assert set(cons) == partition_tables(db) and cons["events"][0] == "ev_u"
