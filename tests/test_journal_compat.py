"""A job journaled by the previous version (pgonline 0.1.0) still resumes.

The fixtures ``fixtures/journal_v1_add_column_paused_pg{18,15}.json`` were
recorded by ``fixtures/make_journal_v1.py`` running pgonline 0.1.0 (commit
5383c60) against a scratch PostgreSQL 18 and 15 server:
``online add-column users token text --backfill 'md5(email)' --not-null``
with ``--phase expand`` and then ``--phase backfill``, so its contract phase
is pending.  It holds that version's journal DDL and every row of its
``pgonline`` tables.  Restoring it and resuming with today's code must upgrade
the journal in place and run exactly the stored plan to the end.
"""

from __future__ import annotations

import json
from pathlib import Path

from psycopg.types.json import Jsonb

from tests.support.tables import columns

FIXTURES = Path(__file__).parent / "fixtures"


def _restore(db) -> dict:
    # The stored plan is the one 0.1.0 made for that server's major version.
    major = "pg18" if db.info.server_version >= 180000 else "pg15"
    data = json.loads((FIXTURES / f"journal_v1_add_column_paused_{major}.json").read_text())
    db.execute(data["table_ddl"])
    db.execute("INSERT INTO users (email) SELECT 'user' || g || '@example.com'"
               " FROM generate_series(1, 100) g")
    # What 0.1.0's expand and backfill phases left in the table.
    db.execute("ALTER TABLE users ADD COLUMN token text")
    db.execute("UPDATE users SET token = md5(email)")
    db.execute(data["journal_ddl"])
    db.execute("DELETE FROM pgonline.meta")
    for table in ("meta", "jobs", "steps", "checkpoints"):
        for row in data["tables"][table]:
            db.execute(f"INSERT INTO pgonline.{table} SELECT * FROM"  # noqa: S608
                       f" jsonb_populate_record(NULL::pgonline.{table}, %s)", [Jsonb(row)])
    db.execute("SELECT setval('pgonline.jobs_id_seq', (SELECT max(id) FROM pgonline.jobs))")
    return data


def test_a_job_journaled_by_pgonline_0_1_resumes_and_finishes_its_stored_plan(db, online):
    data = _restore(db)
    stored = data["tables"]["jobs"][0]["plan"]
    assert [s["id"] for s in stored["steps"]][:2] == ["add-column", "backfill"]
    assert "check-nulls" not in [s["id"] for s in stored["steps"]]
    st = online("status")
    assert st.code == 0 and "add-column" in st.out, st.err
    r = online("resume", "1")
    assert r.code == 0, r.err
    assert db.execute("SELECT status FROM pgonline.jobs WHERE id = 1").fetchone() == ("done",)
    # Exactly the stored plan ran: its steps, not today's plan (no fill trigger, no
    # check-nulls step were added to it).
    assert [s for (s,) in db.execute("SELECT step_id FROM pgonline.steps WHERE job_id = 1"
                                     " ORDER BY ord")] == [s["id"] for s in stored["steps"]]
    assert db.execute("SELECT plan FROM pgonline.jobs WHERE id = 1").fetchone()[0] == stored
    assert columns(db, "users")["token"][1] is True
    # The journal was upgraded in place to today's schema version.
    assert int(db.execute("SELECT value FROM pgonline.meta WHERE key = 'schema_version'"
                          ).fetchone()[0]) >= 2
