"""The same 22-migration history in every layout: validated, applied, rolled back as far as
its downs allow, and applied again (tests/support/histories.py)."""

from __future__ import annotations

import pytest

from tests.support.histories import COUNT, NO_DOWN, write_history

LAYOUTS = ["seed", "golang-migrate", "dbmate", "flyway"]


def _applied(db, table: str = "schema_migrations") -> int:  # type: ignore[no-untyped-def]
    row = db.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608 (a constant)
    return int(row[0])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_history_in_each_layout_applies_rolls_back_and_reapplies(tmp_path, online, db, layout):
    d = write_history(tmp_path / layout, layout)
    r = online("migrate", "validate", str(d), with_dsn=False)
    assert r.code == 0, r.err
    assert r.out.count("no down migration") == 1, r.out  # the ADD VALUE
    assert "gap" not in r.out
    assert online("migrate", "validate", str(d), "--layout", layout, with_dsn=False).code == 0

    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert f"{COUNT} migration(s) applied" in r.out
    assert _applied(db) == COUNT
    assert db.execute("SELECT enum_range(NULL::mood)::text").fetchone() == ("{ok,bad,meh}",)
    assert db.execute("SELECT to_regclass('happy_people'), to_regclass('people_recent')"
                      ).fetchone() == ("happy_people", "people_recent")
    status = online("migrate", "status", str(d)).out
    assert status.count(" applied ") == COUNT, status

    r = online("migrate", "down", str(d), str(COUNT - NO_DOWN))
    assert r.code == 0, r.err
    assert _applied(db) == NO_DOWN
    r = online("migrate", "down", str(d), "1")
    assert r.code == 8 and "no down migration for" in r.err
    assert _applied(db) == NO_DOWN  # refused: nothing changed

    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    assert _applied(db) == COUNT
