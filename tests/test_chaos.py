"""Chaos: ``online`` killed with SIGKILL at random moments while the application writes.

For each change, writer processes (inserts that do not name the new column,
updates of existing columns, deletes; >= 100 ops/s; every committed write
logged) run while each phase of the change is killed at several moments
(seeded: the seed is printed on failure, ``PGONLINE_CHAOS_SEED`` replays it)
and resumed until it completes.  Afterwards, row by row:

* every committed write is in the table, and nothing else changed;
* the application saw no error;
* the change is complete (type, NOT NULL validated, values) and no helper
  object or unfinished job is left.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.support.chaos import (
    TABLE,
    AfterStart,
    AfterStep,
    BackfillAt,
    Blocked,
    Chaos,
    Trigger,
    WriterReport,
    create_table,
    index_names,
    initial_rows,
    leftovers,
    replay,
    row_differences,
    seed_from_env,
    start_writer,
    table_rows,
)
from tests.support.online_load import MAX_LATENCY_MS
from tests.support.tables import columns
from tests.support.writer import WriterSpec

ROWS = 6000
MIN_KILLS = 5
MIN_RATE = 100  # application writes per second, per writer
PHASES = {"expand", "backfill", "contract"}
OLD_CODE = WriterSpec(table=TABLE, insert_columns=("email", "hits", "note"),
                      update_columns=("hits", "note"), email_columns=("email",),
                      int_columns=("hits",))
# add-column: code deployed after expand writes the new column itself.
NEW_MD5_CODE = WriterSpec(table=TABLE, insert_columns=("email", "hits", "note", "email_md5"),
                          update_columns=("hits", "note"), email_columns=("email",),
                          int_columns=("hits",), md5_columns=("email_md5=email",))
ORIGINAL_INDEXES = {f"{TABLE}_pkey", f"{TABLE}_email_key", f"{TABLE}_hits_idx"}

pytestmark = pytest.mark.slow


def _expand_kills(chaos: Chaos) -> list[Trigger]:
    """Mid-step (DDL queued behind an application transaction), then right after start."""
    return [Blocked(chaos.rng.uniform(0, 1.2)), AfterStart(chaos.rng.uniform(0, 0.02))]


def _backfill_kills(chaos: Chaos, *, after: str | None) -> list[Trigger]:
    """Three or four kills at random points of the walk, and one just after step ``after``
    (for the shadow-column changes: in the NOT NULL proof or an index build)."""
    walk = chaos.rng.sample(range(ROWS // 10, ROWS * 9 // 10, 100), chaos.rng.randint(3, 4))
    kills: list[Trigger] = [BackfillAt(rows) for rows in sorted(walk)]
    if after is not None:
        kills.append(AfterStep(after, chaos.rng.uniform(0, 0.05)))
    return kills


def _contract_kills(chaos: Chaos) -> list[Trigger]:
    """Mid-step (queued for ACCESS EXCLUSIVE), then just after the contract's first step."""
    first = next(sid for sid, phase, _ in chaos.steps() if phase == "contract")
    return [Blocked(chaos.rng.uniform(0, 1.2)), AfterStep(first, chaos.rng.uniform(0, 0.02))]


def _check_chaos(chaos: Chaos, report: WriterReport) -> None:
    assert report.errors == [], chaos.summary(report)
    assert report.missing == [], chaos.summary(report)
    assert set(report.rates) == {w.name for w in chaos.writers}, chaos.summary(report)
    assert all(rate >= MIN_RATE for rate in report.rates.values()), chaos.summary(report)
    # No application statement waited longer than our lock_timeout (plus CI slack).
    assert all(ms < MAX_LATENCY_MS for ms in report.max_ms.values()), chaos.summary(report)
    assert len(chaos.kills) >= MIN_KILLS, chaos.summary(report)
    assert chaos.phases_hit() >= PHASES, chaos.summary(report)


def _check_rows(db: psycopg.Connection[Any], chaos: Chaos, expected: dict[int, dict[str, Any]],
                report: WriterReport, cols: list[str]) -> None:
    diff = row_differences(expected, table_rows(db, cols), cols)
    assert diff == {}, f"{diff}\n{chaos.summary(report)}"
    assert leftovers(db) == [], chaos.summary(report)
    assert index_names(db) == ORIGINAL_INDEXES, chaos.summary(report)
    print(chaos.summary(report))  # shown with -s, and for a failure further on


def _start(db: psycopg.Connection[Any], dsn: str, tmp_path: Path) -> Chaos:
    create_table(db, ROWS)
    return Chaos(db, dsn, tmp_path, seed_from_env())


def test_add_column_backfill_not_null_survives_kills_under_live_writes(db, dsn, tmp_path):
    chaos = _start(db, dsn, tmp_path)
    command = ["add-column", TABLE, "email_md5", "text", "--backfill", "md5(email)", "--not-null"]
    with chaos.reporting():
        old = start_writer(dsn, OLD_CODE, tmp_path / "old.log", name="old", partition="0/2",
                           initial_max=ROWS, seed=chaos.seed)
        chaos.writers.append(old)
        chaos.stage(command, "expand", _expand_kills(chaos))
        chaos.writers.append(start_writer(dsn, NEW_MD5_CODE, tmp_path / "new.log", name="new",
                                          partition="1/2", initial_max=ROWS, seed=chaos.seed))
        chaos.stage(command, "backfill", _backfill_kills(chaos, after=None))
        # The deploy is complete: once the column is NOT NULL without a default, an
        # INSERT that does not name it fails, as the user asked; so old code must be
        # gone before the contract phase ends.
        old.stop()
        chaos.stage(command, "contract", _contract_kills(chaos))
        for w in chaos.writers:
            w.stop()
        expected, report = replay(initial_rows(ROWS), chaos.writers)
        _check_chaos(chaos, report)
        assert columns(db, TABLE)["email_md5"] == ("text", True, None), chaos.summary(report)
        # Every row, old or written by the application at any moment, has the backfill value.
        for row in expected.values():
            row["email_md5"] = hashlib.md5(row["email"].encode()).hexdigest()
        _check_rows(db, chaos, expected, report, ["email", "hits", "note", "email_md5"])


def test_change_type_survives_kills_under_live_writes(db, dsn, tmp_path):
    chaos = _start(db, dsn, tmp_path)
    command = ["change-type", TABLE, "hits", "bigint"]
    with chaos.reporting():
        chaos.writers.append(start_writer(dsn, OLD_CODE, tmp_path / "old.log", name="old",
                                          partition="0/1", initial_max=ROWS, seed=chaos.seed))
        chaos.stage(command, "expand", _expand_kills(chaos))
        chaos.stage(command, "backfill", _backfill_kills(chaos, after="backfill"))
        chaos.stage(command, "contract", _contract_kills(chaos))
        for w in chaos.writers:
            w.stop()
        expected, report = replay(initial_rows(ROWS), chaos.writers)
        _check_chaos(chaos, report)
        assert columns(db, TABLE)["hits"] == ("bigint", True, "0"), chaos.summary(report)
        _check_rows(db, chaos, expected, report, ["email", "hits", "note"])


def test_rename_column_survives_kills_with_old_and_new_code_writing(db, dsn, tmp_path):
    """Old code writes ``email`` throughout expand and backfill; new code writes ``contact``
    from the end of expand on (the rolling deploy); only new code runs in contract."""
    chaos = _start(db, dsn, tmp_path)
    command = ["rename-column", TABLE, "email", "contact"]
    old_code = WriterSpec(table=TABLE, insert_columns=("email", "hits"),
                          update_columns=("email", "hits"), email_columns=("email",),
                          int_columns=("hits",))
    new_code = WriterSpec(table=TABLE, insert_columns=("contact", "hits", "note"),
                          update_columns=("contact", "note"), email_columns=("contact",),
                          int_columns=("hits",))
    with chaos.reporting():
        old = start_writer(dsn, old_code, tmp_path / "old.log", name="old", partition="0/2",
                           initial_max=ROWS, seed=chaos.seed)
        chaos.writers.append(old)
        chaos.stage(command, "expand", _expand_kills(chaos))
        chaos.writers.append(start_writer(dsn, new_code, tmp_path / "new.log", name="new",
                                          partition="1/2", initial_max=ROWS, seed=chaos.seed))
        chaos.stage(command, "backfill", _backfill_kills(chaos, after="backfill"))
        old.stop()  # the deploy is complete: no instance uses the old name any more
        chaos.stage(command, "contract", _contract_kills(chaos))
        for w in chaos.writers:
            w.stop()
        expected, report = replay(initial_rows(ROWS), chaos.writers, rename={"email": "contact"})
        _check_chaos(chaos, report)
        cols = columns(db, TABLE)
        assert "email" not in cols, chaos.summary(report)
        assert cols["contact"] == ("text", True, None), chaos.summary(report)
        _check_rows(db, chaos, expected, report, ["contact", "hits", "note"])


CHILD = "chaos_orders"
CHILD_ROWS = 4000
# The parent's writer touches the even pre-existing rows (and its own); the
# child's writer references only odd pre-existing parents, which nobody deletes.
# Their INSERT ... RETURNING id is not kept prepared on the server: a prepared
# statement whose result type changes fails after any type change of id (see
# WriterSpec.prepared; the documented caveat of change-type).
PARENT_CODE = replace(OLD_CODE, prepared=False)
CHILD_CODE = WriterSpec(table=CHILD, insert_columns=("user_id", "amount"),
                        update_columns=("amount",), int_columns=("amount",),
                        ref_columns=(f"user_id:1/2:{ROWS}",), prepared=False)


def _create_child(db: psycopg.Connection[Any]) -> dict[int, dict[str, Any]]:
    db.execute(f"CREATE TABLE {CHILD} (id bigserial PRIMARY KEY, "
               f"user_id integer NOT NULL REFERENCES {TABLE} (id), amount integer)")
    db.execute(f"CREATE INDEX {CHILD}_user_idx ON {CHILD} (user_id)")
    db.execute(f"INSERT INTO {CHILD} (user_id, amount)"  # noqa: S608
               " SELECT 2 * (g %% (%s / 2)) + 1, g FROM generate_series(1, %s) g",
               [ROWS, CHILD_ROWS])
    db.execute(f"ANALYZE {CHILD}")
    return {g: {"user_id": 2 * (g % (ROWS // 2)) + 1, "amount": g}
            for g in range(1, CHILD_ROWS + 1)}


def test_change_type_with_references_survives_kills_under_writes_on_both_tables(db, dsn,
                                                                               tmp_path):
    """int -> bigint on a primary key a foreign key references (#13 item 2): both columns
    converted, one cut-over, the key re-created NOT VALID and validated, under kills."""
    create_table(db, ROWS, id_type="serial")
    child_rows = _create_child(db)
    chaos = Chaos(db, dsn, tmp_path, seed_from_env())
    command = ["change-type", TABLE, "id", "bigint", "--with-references"]
    with chaos.reporting():
        chaos.writers.append(start_writer(dsn, PARENT_CODE, tmp_path / "parent.log",
                                          name="parent", partition="0/2", initial_max=ROWS,
                                          seed=chaos.seed))
        chaos.writers.append(start_writer(dsn, CHILD_CODE, tmp_path / "child.log", name="child",
                                          partition="0/1", initial_max=CHILD_ROWS,
                                          seed=chaos.seed + 1))
        chaos.stage(command, "expand", _expand_kills(chaos))
        walk = sorted(chaos.rng.sample(range(ROWS // 10, ROWS * 9 // 10, 100), 2))
        child_walk = chaos.rng.randrange(CHILD_ROWS // 10, CHILD_ROWS * 9 // 10, 100)
        chaos.stage(command, "backfill", [
            *(BackfillAt(rows) for rows in walk),
            AfterStep("build-index-1", chaos.rng.uniform(0, 0.05)),
            BackfillAt(child_walk, step="ref1-backfill"),
        ])
        chaos.stage(command, "contract", [
            Blocked(chaos.rng.uniform(0, 1.2)),
            AfterStep("cutover", chaos.rng.uniform(0, 0.02)),
            AfterStep("validate-fk-1", chaos.rng.uniform(0, 0.02)),
        ])
        parent, child = chaos.writers
        parent.stop()
        child.stop()
        expected, report = replay(initial_rows(ROWS), [parent])
        expected_child, child_report = replay(child_rows, [child])
        # One report for both writers (their rows are in different tables).
        report.writes += child_report.writes
        report.errors += child_report.errors
        report.missing += child_report.missing
        report.rates.update(child_report.rates)
        report.max_ms.update(child_report.max_ms)
        _check_chaos(chaos, report)
        assert columns(db, TABLE)["id"][0] == "bigint", chaos.summary(report)
        assert columns(db, CHILD)["user_id"] == ("bigint", True, None), chaos.summary(report)
        fks = db.execute("SELECT conname, convalidated, confrelid::regclass::text FROM pg_constraint"
                         " WHERE contype = 'f' AND conrelid = %s::regclass", [CHILD]).fetchall()
        assert fks == [(f"{CHILD}_user_id_fkey", True, TABLE)], chaos.summary(report)
        seq = db.execute("SELECT format_type(seqtypid, NULL) FROM pg_sequence"
                         " WHERE seqrelid = pg_get_serial_sequence(%s, 'id')::regclass",
                         [TABLE]).fetchone()
        assert seq == ("bigint",), chaos.summary(report)
        _check_rows(db, chaos, expected, report, ["email", "hits", "note"])
        diff = row_differences(expected_child, table_rows(db, ["user_id", "amount"], CHILD),
                               ["user_id", "amount"])
        assert diff == {}, f"{diff}\n{chaos.summary(report)}"
        assert leftovers(db, CHILD) == [], chaos.summary(report)
        assert index_names(db, CHILD) == {f"{CHILD}_pkey", f"{CHILD}_user_idx"}
