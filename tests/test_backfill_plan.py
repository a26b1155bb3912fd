"""The batch statements stay index range scans however big the table is.

A batch whose plan scans the whole table costs table size times batches; these
tests read the planner's choice (EXPLAIN, nothing timed) on a table large
enough for a sequential scan to be tempting.
"""

from __future__ import annotations

import pytest

from pgonline.engine.backfill import bounds_query, update_query
from pgonline.engine.plan import BackfillSpec


def _plan(db, query, params) -> str:
    rows = db.execute(b"EXPLAIN " + query.as_bytes(db), params).fetchall()
    return "\n".join(r[0] for r in rows)


@pytest.fixture
def big(db):
    db.execute("CREATE TABLE big (a int, b int, v text, PRIMARY KEY (a, b))")
    db.execute("INSERT INTO big SELECT g / 10, g % 10, NULL FROM generate_series(1, 200000) g")
    db.execute("VACUUM ANALYZE big")
    return db


@pytest.mark.parametrize("first", [True, False])
def test_batch_update_and_bounds_use_the_key_index_not_a_table_scan(big, first):
    spec = BackfillSpec("public", "big", ("a", "b"), '"v" = (a::text || b::text)', '"v" IS NULL')
    lower = [] if first else ["5000", "3"]
    bounds = _plan(big, bounds_query(spec, first=first), [*lower, "20000", "0", 1000])
    update = _plan(big, update_query(spec, first=first), [*lower, "5100", "2"])
    assert "Seq Scan" not in bounds, bounds
    assert "Seq Scan" not in update, update
    assert "big_pkey" in update


def test_an_update_between_bounds_touches_only_that_range(big):
    spec = BackfillSpec("public", "big", ("a", "b"), '"v" = \'x\'', '"v" IS NULL')
    cur = big.execute(update_query(spec, first=False), ["100", "0", "109", "9"])
    # (100,0) excluded, up to (109,9) included: 10 keys per "a", minus the first.
    assert cur.rowcount == 99
