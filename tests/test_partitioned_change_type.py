"""change-type and rename-column on a partitioned table: refused, with the exact reason.

Each case names the PostgreSQL limitation (or the step pgonline does not run
on a partitioned table) and changes nothing.
"""

from __future__ import annotations

import pytest

from tests.support.partitioned import create_events
from tests.support.tables import schema_snapshot


@pytest.mark.parametrize(("args", "reason", "hint"), [
    (["change-type", "events", "id", "numeric"],
     'cannot change the type of "id" of partitioned table "public"."events": it is in the '
     "partition key of",
     "a partition key is fixed for the life of the table"),
    # kind partitions the sub-partitioned events_r2 only.
    (["change-type", "events", "kind", "varchar"],  # binary-coercible: in place elsewhere
     "it is in the partition key of \"public\".\"events\" (or of a sub-partitioned partition)",
     "build a new partitioned table"),
    (["change-type", "events", "hits", "bigint"],
     "the cut-over moves constraint events_hits_id_kind_key to the new column with ADD "
     "CONSTRAINT ... USING INDEX, which PostgreSQL does not support on partitioned tables",
     "every partition must have the parent's column types"),
    (["change-type", "events", "note", "varchar(100)"],
     "its indexes (events_note_idx) must be rebuilt on the new column, and CREATE INDEX "
     "CONCURRENTLY does not run on a partitioned table", "maintenance window"),
    (["change-type", "events", "extra", "bigint"],
     "pgonline does not run the shadow-column change on partitioned tables yet",
     "binary-coercible"),
    (["rename-column", "events", "extra", "extra2"],
     'cannot rename "extra" of partitioned table "public"."events"',
     "RENAME COLUMN on the parent is a catalog update"),
])
def test_change_type_on_a_partitioned_table_is_refused_with_the_reason(db, online, args, reason,
                                                                       hint):
    create_events(db)
    db.execute("ALTER TABLE events ADD COLUMN extra int")
    assert online("add-unique", "events", "hits", "id", "kind").code == 0
    assert online("add-index", "events", "note").code == 0
    before = schema_snapshot(db)
    r = online(*args)
    assert r.code == 3, (r.out, r.err)
    assert reason in r.err, r.err
    assert hint in r.err, r.err
    assert schema_snapshot(db) == before


def test_a_binary_coercible_change_of_a_non_key_column_runs_in_place_on_a_partitioned_table(
        db, online):
    create_events(db)
    db.execute("ALTER TABLE events ALTER COLUMN note TYPE varchar(50)")
    r = online("change-type", "events", "note", "varchar(100)")
    assert r.code == 0, r.err
    types = {str(t) for (t,) in db.execute(
        "SELECT DISTINCT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'note'"
        " AND attrelid IN (SELECT relid FROM pg_partition_tree('events'))")}
    assert types == {"character varying(100)"}
