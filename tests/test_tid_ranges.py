"""Tables without a primary key or NOT NULL unique index: fills walk ranges of pages
(TID range scans, PostgreSQL >= 14), issue #13 item 3.  See engine/tid_ranges.py for why
that is safe."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgonline.strategies._ddl import walk_key
from pgonline.strategies.backfill_set import BackfillArgs, BackfillFacts, plan_backfill

from pgonline.catalog.facts import ColumnFacts, TableFacts
from pgonline.errors import CatalogError
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
from tests.support.tables import columns
from tests.support.writer import WriterSpec

ROWS = 6000
KEYLESS = TableFacts(schema="public", name="logs", oid=1, columns=(
    ColumnFacts("id", "bigint", not_null=False), ColumnFacts("msg", "text", not_null=False)),
    primary_key=(), estimated_rows=10**9, size_bytes=10**12)


def create_keyless(db: psycopg.Connection[Any], rows: int) -> None:
    """The chaos table's columns, with an id from a sequence but no key of any kind."""
    db.execute(f"""
        CREATE SEQUENCE {TABLE}_id_seq;
        CREATE TABLE {TABLE} (id bigint NOT NULL DEFAULT nextval('{TABLE}_id_seq'),
                              email text NOT NULL, hits integer NOT NULL DEFAULT 0, note text);
        CREATE INDEX {TABLE}_id_idx ON {TABLE} (id)""")
    db.execute(f"INSERT INTO {TABLE} (email, hits, note)"  # noqa: S608
               " SELECT 'user' || g || '@example.com', g, 'n' || g FROM generate_series(1, %s) g",
               [rows])
    db.execute(f"SELECT setval('{TABLE}_id_seq', %s)", [rows])
    db.execute(f"ANALYZE {TABLE}")


def test_a_fill_walks_pages_from_postgresql_14_and_is_refused_before_it_with_the_reason():
    assert walk_key(KEYLESS, major=14) == ()
    with pytest.raises(CatalogError) as err:
        walk_key(KEYLESS, major=13)
    assert "TID range scans" in err.value.message and "PostgreSQL 13" in err.value.message


def test_online_backfill_on_a_table_without_a_key_is_refused_it_could_update_a_row_twice():
    with pytest.raises(CatalogError) as err:
        plan_backfill(BackfillFacts(table=KEYLESS), BackfillArgs(columns=("msg",), values=("'x'",)))
    assert "no primary key" in err.value.message
    assert "twice" in (err.value.hint or "")


def test_add_column_backfill_on_a_table_without_a_key_survives_kills_under_live_writes(
        db, dsn, tmp_path: Path):
    create_keyless(db, ROWS)
    chaos = Chaos(db, dsn, tmp_path, seed_from_env())
    command = ["add-column", TABLE, "email_md5", "text", "--backfill", "md5(email)",
               "--not-null"]
    spec = WriterSpec(table=TABLE, insert_columns=("email", "hits", "note"),
                      update_columns=("hits", "note"), email_columns=("email",),
                      int_columns=("hits",))
    with chaos.reporting():
        chaos.writers.append(start_writer(dsn, spec, tmp_path / "w.log", name="app",
                                          partition="0/1", initial_max=ROWS, seed=chaos.seed))
        chaos.stage(command, "expand", [])
        walk = sorted(chaos.rng.sample(range(ROWS // 10, ROWS * 8 // 10, 100), 2))
        chaos.stage(command, "backfill", [BackfillAt(rows) for rows in walk])
        # NOT NULL without a default: code that omits the column is gone before the
        # contract drops the fill trigger (which the chaos test of add-column shows).
        chaos.writers[0].stop()
        chaos.stage(command, "contract", [])
        expected, report = replay(initial_rows(ROWS), chaos.writers)
        assert report.errors == [] and report.missing == [], chaos.summary(report)
        assert len(chaos.kills) == 2, chaos.summary(report)
        for row in expected.values():
            row["email_md5"] = hashlib.md5(row["email"].encode()).hexdigest()
        cols = ["email", "hits", "note", "email_md5"]
        diff = row_differences(expected, table_rows(db, cols), cols)
        assert diff == {}, f"{diff}\n{chaos.summary(report)}"
        assert columns(db, TABLE)["email_md5"][:2] == ("text", True)


def test_a_table_rewritten_during_the_walk_is_walked_again(db, dsn):
    """VACUUM FULL renumbers every page: rows from pages still to walk land on pages already
    walked.  Without the file-node check those rows would be left NULL."""
    create_keyless(db, ROWS)
    command = ["add-column", TABLE, "email_md5", "text", "--backfill", "md5(email)"]
    r = spawn_online([*command, "--phase", "expand"], dsn)
    assert r.wait(timeout=60) == 0, r.stderr.read() if r.stderr else ""
    proc = spawn_online([*command, "--phase", "backfill", *SLOW_BATCHES], dsn)
    wait_for_checkpoint(db, ROWS // 2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # Free the walked pages, then compact: the rows still NULL move onto them.
    db.execute(f"DELETE FROM {TABLE} WHERE id <= %s", [ROWS // 3])  # noqa: S608
    db.execute(f"VACUUM FULL {TABLE}")
    proc = spawn_online(["resume", "1", "--phase", "backfill"], dsn)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "walking it again" in err
    left = db.execute(f"SELECT count(*) FROM {TABLE}"  # noqa: S608
                      " WHERE email_md5 IS DISTINCT FROM md5(email)").fetchone()
    assert left == (0,)
    assert db.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (ROWS - ROWS // 3,)  # noqa: S608


def test_change_type_on_a_table_without_a_key_converts_every_row(db, online):
    create_keyless(db, ROWS)
    r = online("change-type", TABLE, "hits", "bigint")
    assert r.code == 0, r.err
    assert columns(db, TABLE)["hits"][0] == "bigint"
    assert db.execute(f"SELECT count(*), sum(hits) FROM {TABLE}"  # noqa: S608
                      ).fetchone() == (ROWS, ROWS * (ROWS + 1) // 2)
