"""``online migrate up`` without ``--online``: one warning per statement ``--online`` would have
rewritten, naming the lock it takes and the table's estimated rows; what runs is unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg

from tests.support.tables import columns, create_users

HINT = "`migrate up --online` runs it as"


def _migrations(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "m"
    d.mkdir(exist_ok=True)
    for name, sql in files.items():
        (d / f"{name}.sql").write_text(sql)
        (d / f"{name}_down.sql").write_text("SELECT 1;\n")
    return d


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if HINT in line]


def _orders(db: psycopg.Connection[Any], rows: int) -> None:
    db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint)")
    db.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, %s) g", [rows])
    db.execute("ANALYZE orders")


CHANGE = ("BEGIN;\n"
          "ALTER TABLE users ADD COLUMN verified bool NOT NULL DEFAULT false;\n"
          "CREATE INDEX users_email_idx ON users (email);\n"
          "COMMENT ON COLUMN users.verified IS 'set for existing users';\n"
          "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);\n"
          "COMMIT;\n")


def test_each_statement_online_would_rewrite_warns_with_its_lock_and_rows(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    create_users(db, 3000)
    _orders(db, 500)
    d = _migrations(tmp_path, {"001_change": CHANGE, "002_drop": "DROP INDEX users_email_idx;\n"})
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    found = _warnings(r.err)
    assert len(found) == 4, r.err  # not the COMMENT
    assert ("statement 1 of 001_change.sql (line 2) takes ACCESS EXCLUSIVE on public.users "
            "(~3,000 rows); `migrate up --online` runs it as `online add-column users verified "
            "bool NOT NULL DEFAULT FALSE`") in found[0]
    assert ("statement 2 of 001_change.sql (line 3) takes SHARE on public.users (~3,000 rows); "
            "`migrate up --online` runs it as `online add-index users email --name users_email_idx`"
            ) in found[1]
    # ADD FOREIGN KEY locks writes only (SHARE ROW EXCLUSIVE), on the table it alters.
    assert ("statement 4 of 001_change.sql (line 5) takes SHARE ROW EXCLUSIVE on public.orders "
            "(~500 rows); ") in found[2]
    # DROP INDEX locks the index's table.
    assert ("statement 1 of 002_drop.sql (line 1) takes ACCESS EXCLUSIVE on public.users "
            "(~3,000 rows); `migrate up --online` runs it as `online drop-index users_email_idx`"
            ) in found[3]
    assert all("[warning" in line for line in found)
    # What runs is unchanged: each file in one transaction, as written, no pgonline job.
    assert r.out.count("(one transaction)") == 2, r.out
    assert columns(db, "users")["verified"] == ("boolean", True, "false")
    assert db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,)
    assert db.execute("SELECT count(*) FROM pg_constraint WHERE conname = 'orders_user_fk'"
                      " AND convalidated").fetchone() == (1,)


def test_the_warning_is_a_json_object_with_its_facts(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    create_users(db, 1200)
    d = _migrations(tmp_path, {"001_index": "SET lock_timeout = '1s';\n"
                                            "CREATE INDEX users_hits_idx ON users (hits) WHERE hits > 0;\n"})
    r = online("--log-format", "json", "migrate", "up", str(d))
    assert r.code == 0, r.err
    [event] = [json.loads(line) for line in r.err.splitlines() if line.strip()]
    assert event["level"] == "warning" and HINT in event["event"]
    assert {k: event[k] for k in ("file", "line", "statement", "lock", "table", "rows", "online")} == {
        "file": "001_index.sql", "line": 2, "statement": 2, "lock": "SHARE", "table": "public.users",
        "rows": 1200, "online": "add-index"}


def test_statements_on_tables_created_in_the_same_run_do_not_warn(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    create_users(db, 100)
    d = _migrations(tmp_path, {
        "001_orders": "CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint, note text);\n"
                      "CREATE INDEX orders_user ON orders (user_id);\n",
        "002_orders_more": "ALTER TABLE orders ADD COLUMN total numeric NOT NULL DEFAULT 0;\n"
                           "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id)"
                           " REFERENCES users (id);\n"
                           "ALTER TABLE orders ALTER COLUMN note SET NOT NULL;\n"
                           "DROP INDEX orders_user;\n"
                           "CREATE INDEX users_hits_idx ON users (hits);\n",
    })
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    # Only the statement on users, which this run did not create.
    assert [w.split(" takes ")[0].split("] ")[-1] for w in _warnings(r.err)] == [
        "statement 5 of 002_orders_more.sql (line 5)"]
    # A later run meets orders as an existing table (never analyzed: no row estimate).
    _migrations(tmp_path, {"003_orders_index": "CREATE INDEX orders_total ON orders (total);\n"})
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    [warning] = _warnings(r.err)
    assert "takes SHARE on public.orders (rows unknown: never analyzed)" in warning


def test_a_table_the_file_creates_if_not_exists_warns_without_numbers_and_runs(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    # IF NOT EXISTS may name an old, big table, so --online would rewrite the index;
    # at warning time the schema does not exist yet.
    d = _migrations(tmp_path, {"001_app": "CREATE SCHEMA app;\n"
                                          "CREATE TABLE IF NOT EXISTS app.events (id bigint, kind text);\n"
                                          "CREATE INDEX events_kind ON app.events (kind);\n"})
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    [warning] = _warnings(r.err)
    assert "statement 3 of 001_app.sql (line 3) takes SHARE on app.events (not in the database yet)" \
        in warning
    assert db.execute("SELECT to_regclass('app.events_kind')").fetchone() == ("app.events_kind",)


def test_dry_run_warns_too_and_online_rewrites_instead_of_warning(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    create_users(db, 100)
    d = _migrations(tmp_path, {"001_index": "CREATE INDEX users_hits_idx ON users (hits);\n"})
    dry = online("migrate", "up", str(d), "--dry-run")
    assert dry.code == 0, dry.err
    assert len(_warnings(dry.err)) == 1 and "would apply 001_index in one transaction" in dry.out
    assert db.execute("SELECT to_regclass('users_hits_idx')").fetchone() == (None,)
    r = online("migrate", "up", str(d), "--online")
    assert r.code == 0, r.err
    assert _warnings(r.err) == [] and "(statement by statement)" in r.out


def _index_orders_warning(tmp_path: Path, online: Any, name: str) -> str:
    d = _migrations(tmp_path, {name: f"CREATE INDEX orders_{name} ON orders (user_id);\n"})
    r = online("migrate", "up", str(d))
    assert r.code == 0, r.err
    [warning] = [w for w in _warnings(r.err) if f"{name}.sql" in w]
    return warning


def test_rows_are_unknown_for_a_never_analyzed_table_and_zero_for_an_analyzed_empty_one(
        tmp_path: Path, online: Any, db: psycopg.Connection[Any]) -> None:
    # Autovacuum must not analyze the table while the test looks at it.
    db.execute("CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint)"
               " WITH (autovacuum_enabled = off)")
    db.execute("INSERT INTO orders SELECT g, g FROM generate_series(1, 50) g")
    assert "on public.orders (rows unknown: never analyzed)" in \
        _index_orders_warning(tmp_path, online, "001_a")
    # The shape PostgreSQL 13 and older give a never-analyzed table: reltuples 0, not -1.
    db.execute("UPDATE pg_class SET reltuples = 0, relpages = 0 WHERE oid = 'orders'::regclass")
    assert "on public.orders (rows unknown: never analyzed)" in \
        _index_orders_warning(tmp_path, online, "002_b")
    # An analyzed empty table really has no rows.
    db.execute("DELETE FROM orders")
    db.execute("VACUUM ANALYZE orders")
    assert db.execute("SELECT reltuples, relpages FROM pg_class WHERE oid = 'orders'::regclass"
                      ).fetchone() == (0, 0)
    assert "on public.orders (~0 rows)" in _index_orders_warning(tmp_path, online, "003_c")
