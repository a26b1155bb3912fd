"""Citus tables are refused at planning time; local tables on a Citus node are changed as usual.

Citus cannot be installed on the machines this suite runs on, so these tests
use a **stub**: a table ``pg_catalog.pg_dist_partition`` with the columns
pgonline reads (``logicalrelid``, ``partmethod``, ``repmodel``), created the
way only a superuser can (``allow_system_table_mods``, settable per session
since PostgreSQL 12), in ``pg_catalog`` because that is where Citus creates
it and the only place pgonline looks.  A stub proves the detection and the
refusal; it proves nothing about how Citus itself would run our steps
(docs/scale.md covers that, on paper).
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.support.tables import columns, create_users


def _citus_stub(db: psycopg.Connection[Any]) -> None:
    db.execute("SET allow_system_table_mods = on")
    db.execute("""CREATE TABLE pg_catalog.pg_dist_partition (
                      logicalrelid regclass NOT NULL, partmethod "char" NOT NULL,
                      partkey text, colocationid integer NOT NULL DEFAULT 0,
                      repmodel "char" NOT NULL DEFAULT 'c')""")
    db.execute("RESET allow_system_table_mods")


def _distribute(db: psycopg.Connection[Any], table: str, partmethod: str, repmodel: str) -> None:
    db.execute("INSERT INTO pg_catalog.pg_dist_partition (logicalrelid, partmethod, repmodel)"
               " VALUES (%s::regclass, %s, %s)", [table, partmethod, repmodel])


def _jobs(db: psycopg.Connection[Any]) -> int:
    if db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,):
        return 0
    row = db.execute("SELECT count(*) FROM pgonline.jobs").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.parametrize(("partmethod", "repmodel", "called"), [
    ("h", "s", "a hash-distributed table"),
    ("n", "t", "a reference table"),
    ("a", "c", "an append-distributed table"),
])
def test_a_citus_distributed_or_reference_table_is_refused_with_exit_3_before_any_job(
        db, online, partmethod, repmodel, called):
    create_users(db, 100)
    _citus_stub(db)
    _distribute(db, "users", partmethod, repmodel)
    r = online("add-column", "users", "verified", "bool", "--default", "false")
    assert r.code == 3, r.err
    assert f'"public"."users" is {called} in Citus' in r.err
    assert "docs/scale.md" in r.err
    assert "verified" not in columns(db, "users")
    assert _jobs(db) == 0


def test_the_dry_run_plans_nothing_for_a_distributed_table_either(db, online):
    create_users(db, 10)
    _citus_stub(db)
    _distribute(db, "users", "h", "s")
    r = online("add-index", "users", "email", "--dry-run")
    assert r.code == 3, r.err
    assert "hash-distributed" in r.err and r.out == ""


def test_a_local_table_on_a_citus_node_is_changed_as_usual(db, online):
    create_users(db, 100)
    create_users(db, 10, table="events")
    _citus_stub(db)
    _distribute(db, "events", "h", "s")  # another table is distributed; users is local
    r = online("add-column", "users", "verified", "bool", "--default", "false")
    assert r.code == 0, r.err
    assert "verified" in columns(db, "users")


def test_an_index_change_is_refused_by_the_table_its_index_is_on(db, online):
    create_users(db, 10)
    db.execute("CREATE INDEX users_email ON users (email)")
    _citus_stub(db)
    _distribute(db, "users", "n", "t")
    r = online("drop-index", "users_email")
    assert r.code == 3, r.err
    assert "reference table" in r.err
    assert db.execute("SELECT to_regclass('users_email')").fetchone() != (None,)


def test_a_user_table_named_pg_dist_partition_outside_pg_catalog_is_not_citus(db, online):
    create_users(db, 10)
    db.execute('CREATE TABLE public.pg_dist_partition (logicalrelid regclass, partmethod "char")')
    db.execute("INSERT INTO public.pg_dist_partition VALUES ('users', 'h')")
    r = online("add-column", "users", "verified", "bool", "--default", "false")
    assert r.code == 0, r.err
