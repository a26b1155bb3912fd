"""add-check and add-foreign-key on a partitioned table: validated leaf by leaf, then the parent.

An application writer inserts, updates and deletes through the parent the
whole time; every write it saw committed is checked row by row.
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
    """table → (constraint, its parent constraint, validated)."""
    return {str(r[0]): (str(r[1]), r[2], bool(r[3])) for r in db.execute(
        "SELECT c.conrelid::regclass::text, c.conname, p.conname, c.convalidated"
        "  FROM pg_constraint c LEFT JOIN pg_constraint p ON p.oid = c.conparentid"
        " WHERE c.contype = %s AND c.conrelid::regclass::text LIKE 'events%%'", [contype])}



def _steps(db: psycopg.Connection[Any]) -> list[str]:
    (plan,) = db.execute("SELECT plan FROM pgonline.jobs ORDER BY id DESC LIMIT 1").fetchone()
    return [s["id"] for s in plan["steps"]]



def test_check_is_validated_leaf_by_leaf_then_on_the_parent_under_writes(db, dsn, online,
                                                                         tmp_path: Path):
    create_events(db)
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=21, rate=200)
    try:
        r, during = run_while_writing(writer, online, "add-check", "events", "hits_nonneg",
                                      "hits >= 0", "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during
    finally:
        writer.stop()
    assert r.code == 0, r.err
    steps = _steps(db)
    assert steps[0] == "add-constraint" and steps[-1] == "validate"
    assert len([s for s in steps if s.startswith("validate-p")]) == 6  # one per leaf
    cons = _constraints(db, "c")
    assert set(cons) == partition_tables(db)
    assert all(name == "hits_nonneg" and valid for name, _, valid in cons.values()), cons
    check_writer(db, writer)


def test_foreign_key_is_added_per_leaf_then_adopted_by_the_parent_under_writes(
        db, dsn, online, tmp_path: Path):
    create_events(db)
    db.execute("CREATE TABLE kinds (kind text PRIMARY KEY)")
    db.execute("INSERT INTO kinds VALUES ('a'), ('b'), ('c')")
    writer = start_writer(dsn, WRITER, tmp_path / "w.log", name="app", partition="0/1",
                          initial_max=ROWS, seed=22, rate=200)
    try:
        r, during = run_while_writing(writer, online, "add-foreign-key", "events", "kind",
                                      "--references", "kinds", "--lock-timeout", LOCK_TIMEOUT)
        assert during > 5, during
    finally:
        writer.stop()
    assert r.code == 0, r.err
    cons = _constraints(db, "f")
    # Every table of the tree has a validated foreign key; the leaves' are children of
    # their parent's (the sub-partitions' were created by the parent's ADD FOREIGN KEY).
    assert set(cons) == partition_tables(db)
    assert cons["events"] == ("events_kind_fkey", None, True)
    assert all(valid for _, _, valid in cons.values()), cons
    assert cons["events_r3"][1] == "events_kind_fkey"
    assert cons["events_r1_h0"][1] == cons["events_r1"][0]
    # Enforced through the parent.
    try:
        db.execute("INSERT INTO events (kind, hits) VALUES ('zz', 1)")
        raise AssertionError("orphan accepted")
    except psycopg.errors.ForeignKeyViolation:
        pass
    check_writer(db, writer)


def test_rollback_of_the_partitioned_foreign_key_restores_the_schema(db, online):
    create_events(db)
    db.execute("CREATE TABLE kinds (kind text PRIMARY KEY)")
    db.execute("INSERT INTO kinds VALUES ('a'), ('b')")
    before = schema_snapshot(db)
    # Stop after the expand phase (leaves have NOT VALID keys), roll back; then all of it.
    assert online("add-foreign-key", "events", "kind", "--references", "kinds",
                  "--phase", "expand").code == 0
    assert len(_constraints(db, "f")) == 6
    (job,) = db.execute("SELECT id FROM pgonline.jobs").fetchone()
    assert online("rollback", str(job), "--confirm").code == 0
    assert schema_snapshot(db) == before
    assert online("add-foreign-key", "events", "kind", "--references", "kinds").code == 0
    (job,) = db.execute("SELECT max(id) FROM pgonline.jobs").fetchone()
    r = online("rollback", str(job), "--confirm")
    assert r.code == 0, r.err
    assert schema_snapshot(db) == before


def test_orphans_are_refused_before_anything_changes(db, online):
    create_events(db)
    db.execute("CREATE TABLE kinds (kind text PRIMARY KEY)")
    db.execute("INSERT INTO kinds VALUES ('a')")
    before = schema_snapshot(db)
    r = online("add-foreign-key", "events", "kind", "--references", "kinds")
    assert r.code == 4, r.err
    assert "reference a missing row" in r.err
    assert schema_snapshot(db) == before
