"""Fleet mode: one command on many real databases (two servers, one target unreachable).

Every target is its own database with its own journal; the session server
holds most of them and a second throw-away server (same binaries) holds one,
so "many databases" also means "more than one server".  An unreachable
target is a closed port.  Every DSN carries a password (the servers trust
local connections, so it is never checked) that must never be printed.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import psycopg.conninfo
import pytest

from pgonline.connection import with_database
from pgonline.devtools.local_server import LocalServer, free_port, start_from_bindir
from tests.support import servers
from tests.support.tables import columns, create_users

SECRET = "s3cr3t-pw"
_names = itertools.count()


@pytest.fixture(scope="module")
def second_server(pg_server: servers.TestServer) -> Iterator[LocalServer]:
    if pg_server.bindir is None:
        pytest.skip("the session server is not local: no binaries for a second one")
    server = start_from_bindir(pg_server.bindir)
    try:
        yield server
    finally:
        server.stop()


class Fleet:
    """Databases created for one test (dropped after it), and a targets file listing them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.created: list[tuple[str, str]] = []  # (admin dsn, database)

    def database(self, server_dsn: str) -> str:
        """A new database on that server; its DSN, with a password in it."""
        name = f"fleet_{os.getpid()}_{next(_names)}"
        with psycopg.connect(server_dsn, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self.created.append((server_dsn, name))
        dsn = with_database(server_dsn, name)
        return dsn + f" password={SECRET}" if "://" not in dsn else dsn.replace(
            "://postgres@", f"://postgres:{SECRET}@")

    def targets(self, dsns: list[str]) -> str:
        path = self.tmp_path / "targets.txt"
        path.write_text("# the fleet of this test\n\n" + "\n".join(dsns) + "\n")
        return str(path)

    def drop(self) -> None:
        for server_dsn, name in self.created:
            with psycopg.connect(server_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                              " WHERE datname = %s", [name])
                admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    f.drop()


def unreachable() -> str:
    return f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/nowhere?connect_timeout=2"


def conn(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def _json_summary(out: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return data


def _migrations(tmp_path: Path) -> str:
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "001_users.sql").write_text(
        "CREATE TABLE users (id bigserial PRIMARY KEY, email text);\n"
        "INSERT INTO users (email) SELECT 'u' || g FROM generate_series(1, 500) g;\n")
    (d / "001_users_down.sql").write_text("DROP TABLE users;\n")
    (d / "002_verified.sql").write_text(
        "ALTER TABLE users ADD COLUMN verified boolean NOT NULL DEFAULT false;\n")
    (d / "002_verified_down.sql").write_text("ALTER TABLE users DROP COLUMN verified;\n")
    return str(d)


def test_migrate_up_on_two_servers_goes_on_past_an_unreachable_target_and_exits_11(
        pg_server, second_server, fleet, online, tmp_path):
    dsns = [fleet.database(pg_server.dsn), fleet.database(pg_server.dsn),
            unreachable(), fleet.database(second_server.dsn)]
    targets = fleet.targets(dsns)
    directory = _migrations(tmp_path)

    r = online("migrate", "up", directory, "--online", "--targets", targets,
               "--concurrency", "2", with_dsn=False)

    assert r.code == 11, r.err
    assert SECRET not in r.out + r.err
    lines = r.out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("target"))
    rows = lines[header + 2:header + 2 + len(dsns)]
    assert [("2 applied" in row) for row in rows] == [True, True, False, True], r.out
    assert "failed" in rows[2] and "***" in rows[2]
    assert "cannot connect to PostgreSQL" in r.out
    assert "3 of 4 target(s) succeeded" in r.out
    assert "1 of 4 target(s) failed (first: " in r.err and "exit 7)" in r.err
    for dsn in (dsns[0], dsns[1], dsns[3]):
        with conn(dsn) as db:
            assert "verified" in columns(db, "users")
            assert db.execute("SELECT count(*) FROM schema_migrations").fetchone() == (2,)

    # Down on the reachable ones, then up again: one migration each way.
    reachable = fleet.targets([dsns[0], dsns[1], dsns[3]])
    r = online("migrate", "down", directory, "1", "--targets", reachable, with_dsn=False)
    assert r.code == 0, r.err
    assert r.out.count("1 rolled back") == 3, r.out
    r = online("migrate", "up", directory, "--targets", reachable, with_dsn=False)
    assert r.code == 0, r.err
    assert r.out.count("1 applied") == 3, r.out

    # The same again: the reachable ones are up to date, as JSON this time.
    r = online("migrate", "up", directory, "--targets", fleet.targets(dsns), "--format", "json",
               with_dsn=False)
    assert r.code == 11, r.err
    targets = fleet.targets(dsns)
    summary = _json_summary(r.out)
    assert [t["result"] for t in summary["targets"]] == [
        "up to date", "up to date", "failed", "up to date"]
    assert summary["targets"][2]["exit_code"] == 7
    assert all(SECRET not in t["target"] and "***" in t["target"] for t in summary["targets"])
    assert SECRET not in r.out + r.err


def test_every_schema_change_command_takes_targets_and_status_aggregates_the_fleet(
        pg_server, fleet, online):
    dsns = [fleet.database(pg_server.dsn) for _ in range(3)]
    for i, dsn in enumerate(dsns):
        with conn(dsn) as db:
            create_users(db, 300 * (i + 1))
    targets = fleet.targets(dsns)

    r = online("--log-format", "json", "add-column", "users", "token", "uuid", "--default",
               "gen_random_uuid()", "--targets", targets, "--concurrency", "3",
               "--format", "json", with_dsn=False)

    assert r.code == 0, r.err
    summary = _json_summary(r.out)
    assert [t["result"] for t in summary["targets"]] == ["done"] * 3
    assert [t["rows"] for t in summary["targets"]] == [300, 600, 900]
    assert [t["job_id"] for t in summary["targets"]] == [1, 1, 1]  # one journal per database
    assert SECRET not in r.out + r.err
    # Every log line of a target names it, without its password.
    events = [json.loads(line) for line in r.err.splitlines() if line.startswith("{")]
    started = [e for e in events if e["event"] == "job started"]
    assert len(started) == 3 and all("***" in e["database"] for e in started)
    assert {e["database"] for e in started} == {t["target"] for t in summary["targets"]}

    # A re-run is a no-op per target: it finished there already.
    r = online("add-column", "users", "token", "uuid", "--default", "gen_random_uuid()",
               "--targets", targets, with_dsn=False)
    assert r.code == 0, r.err
    assert r.out.count("already done") == 3, r.out

    r = online("status", "--targets", targets, with_dsn=False)
    assert r.code == 0, r.err
    assert r.out.count("add-column") == 3 and SECRET not in r.out
    r = online("status", "--targets", targets, "--format", "json", with_dsn=False)
    data = json.loads(r.out)
    assert [len(t["jobs"]) for t in data] == [1, 1, 1]
    assert data[0]["jobs"][0]["status"] == "done"

    # A database that cannot be read is a line of its own, and the exit code says so.
    r = online("status", "--targets", fleet.targets([*dsns, unreachable()]), with_dsn=False)
    assert r.code == 11, r.err
    assert "error: cannot connect to PostgreSQL" in r.out and SECRET not in r.out + r.err
    assert r.out.count("add-column") == 3


def test_a_target_whose_table_stays_locked_fails_alone_with_exit_5(pg_server, fleet, online):
    dsns = [fleet.database(pg_server.dsn) for _ in range(3)]
    for dsn in dsns:
        with conn(dsn) as db:
            create_users(db, 200)
    targets = fleet.targets(dsns)
    holder = conn(dsns[1])
    try:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        t0 = time.monotonic()
        r = online("add-column", "users", "verified", "bool", "--default", "false",
                   "--lock-timeout", "50", "--max-retries", "2", "--targets", targets,
                   "--concurrency", "3", with_dsn=False)
        took = time.monotonic() - t0
    finally:
        holder.close()
    assert r.code == 11, r.err
    lines = [line for line in r.out.splitlines() if "***" in line and "  " in line]
    assert ["done" in line.split("  ", 1)[1] for line in lines[:3]] == [True, False, True], r.out
    assert "failed" in lines[1]
    assert "exit 5" in r.err
    assert 5 <= took < 30
    with conn(dsns[0]) as db:
        assert "verified" in columns(db, "users")
    # Planning itself reads the table's defaults (pg_get_expr takes ACCESS SHARE),
    # so it gave up after --lock-timeout x --max-retries (5 s at least), before
    # creating a job; the other targets did not wait for it.
    assert "planning waited more than 5000 ms for a lock" in r.out
    assert _job_statuses(dsns[1]) == []
    with conn(dsns[1]) as db:
        assert "verified" not in columns(db, "users")


def test_stop_on_error_and_canary_start_no_further_target_after_a_failure(
        pg_server, fleet, online):
    dsns = [fleet.database(pg_server.dsn), unreachable(), fleet.database(pg_server.dsn)]
    for dsn in (dsns[0], dsns[2]):
        with conn(dsn) as db:
            create_users(db, 50)
    targets = fleet.targets(dsns)

    r = online("add-column", "users", "a", "int", "--targets", targets, "--stop-on-error",
               "--format", "json", with_dsn=False)
    assert r.code == 11, r.err
    summary = _json_summary(r.out)
    assert [t["result"] for t in summary["targets"]] == ["done", "failed", "not started"]
    assert "--stop-on-error" in summary["stopped_because"]
    with conn(dsns[2]) as db:
        assert "a" not in columns(db, "users")

    canary_first = fleet.targets([dsns[1], dsns[0], dsns[2]])
    r = online("add-column", "users", "b", "int", "--targets", canary_first, "--canary", "1",
               "--concurrency", "2", "--format", "json", with_dsn=False)
    assert r.code == 11, r.err
    summary = _json_summary(r.out)
    assert [t["result"] for t in summary["targets"]] == ["failed", "not started", "not started"]
    assert summary["stopped_because"].startswith("canary failed")
    for dsn in (dsns[0], dsns[2]):
        with conn(dsn) as db:
            assert "b" not in columns(db, "users")

    # A canary that succeeds lets the rest run.
    r = online("add-column", "users", "b", "int", "--targets", fleet.targets([dsns[0], dsns[2]]),
               "--canary", "1", with_dsn=False)
    assert r.code == 0, r.err


def test_the_targets_file_takes_dsns_service_names_and_comments_and_hides_passwords():
    from pgonline.engine.fleet import parse_targets

    found = parse_targets(
        "# shards\n"
        "postgresql://app:pa#ss@db1/app   # the first (a # inside a password is kept)\n"
        "\n"
        "host=db2 dbname=app password=hunter2\n"
        "   tenant_eu\n")
    assert [t.dsn for t in found] == ["postgresql://app:pa#ss@db1/app",
                                      "host=db2 dbname=app password=hunter2",
                                      "service=tenant_eu"]
    assert [t.label for t in found] == ["postgresql://app:***@db1/app",
                                        "host=db2 dbname=app password=***", "tenant_eu"]
    assert [t.line for t in found] == [2, 4, 5]


@pytest.mark.parametrize(("text", "message"), [
    ("", "lists no target"),
    ("# only a comment\n", "lists no target"),
    ("host=a dbname=x\nhost=a dbname=x\n", "line 2: the same target as line 1"),
    ("host='unterminated\n", "line 1: not a DSN or service name"),
])
def test_a_bad_targets_file_is_a_usage_error(text, message):
    from pgonline.engine.fleet import parse_targets
    from pgonline.errors import UsageError

    with pytest.raises(UsageError, match=message):
        parse_targets(text)


def test_targets_excludes_dsn_and_the_fleet_options_need_targets(online, tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("host=nowhere\n")
    r = online("add-column", "users", "a", "int", "--targets", str(path))  # + --dsn
    assert r.code == 2 and "--dsn and --targets exclude each other" in r.err
    r = online("add-column", "users", "a", "int", "--canary", "1")
    assert r.code == 2 and "--canary needs --targets FILE" in r.err


SLOW = ["add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
        "--batch-size", "50", "--min-batch-size", "50", "--max-batch-size", "50",
        "--sleep-ms", "40"]


def _rows_done(dsn: str) -> int:
    with conn(dsn) as db:
        if db.execute("SELECT to_regclass('pgonline.checkpoints')").fetchone() == (None,):
            return 0
        row = db.execute("SELECT coalesce(sum(rows_done), 0) FROM pgonline.checkpoints"
                         ).fetchone()
        return int(row[0]) if row else 0


def _job_statuses(dsn: str) -> list[str]:
    with conn(dsn) as db:
        if db.execute("SELECT to_regclass('pgonline.jobs')").fetchone() == (None,):
            return []
        return [str(r[0]) for r in db.execute("SELECT status FROM pgonline.jobs ORDER BY id")]


def _wait_for_sessions_to_end(server_dsn: str, dsns: list[str]) -> None:
    names = [str(psycopg.conninfo.conninfo_to_dict(d)["dbname"]) for d in dsns]
    deadline = time.monotonic() + 10
    with conn(server_dsn) as admin:
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = ANY(%s)"
                            " AND application_name = 'pgonline'", [names]).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_ctrl_c_stops_every_running_target_resumably_and_a_rerun_continues_only_those(
        pg_server, fleet, online):
    dsns = [fleet.database(pg_server.dsn) for _ in range(4)]
    sizes = [20, 4000, 4000, 20]
    for dsn, rows in zip(dsns, sizes, strict=True):
        with conn(dsn) as db:
            create_users(db, rows)
    targets = fleet.targets(dsns)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgonline", "--log-format", "json", *SLOW, "--targets", targets,
         "--concurrency", "2", "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Target 1 (20 rows) finishes at once; targets 2 and 3 then backfill slowly
        # side by side, and target 4 waits for a free slot.
        deadline = time.monotonic() + 60
        while _rows_done(dsns[1]) < 200 or _rows_done(dsns[2]) < 200:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert SECRET not in out + err
    summary = _json_summary(out)
    assert summary["interrupted"] is True
    assert [t["result"] for t in summary["targets"]] == [
        "done", "interrupted", "interrupted", "not started"]
    assert [_job_statuses(d) for d in dsns] == [["done"], ["interrupted"], ["interrupted"], []]
    last = json.loads(err.strip().splitlines()[-1])
    assert last["event"] == "error" and last["exit_code"] == 130
    assert "fleet interrupted: 2 target(s) stopped resumably, 1 not started" in last["error"]
    partial = [_rows_done(dsns[1]), _rows_done(dsns[2])]
    assert all(0 < n < 4000 for n in partial)

    # The stopped process closed its sessions; the server ends their backends (and
    # with them the jobs' advisory locks) a moment later.
    _wait_for_sessions_to_end(pg_server.dsn, dsns)
    # The same command again (faster batches: pacing is not part of the command's identity).
    r = online(*SLOW[:6], "--targets", targets, "--concurrency", "2", "--format", "json",
               with_dsn=False)
    assert r.code == 0, r.err
    summary = _json_summary(r.out)
    assert [t["result"] for t in summary["targets"]] == [
        "already done", "done (resumed)", "done (resumed)", "done"]
    # Resumed from their checkpoints: only the rows left were updated.
    assert [summary["targets"][i]["rows"] for i in (1, 2)] == [4000 - n for n in partial]
    assert [_job_statuses(d) for d in dsns] == [["done"]] * 4
    for dsn in dsns:
        with conn(dsn) as db:
            assert db.execute("SELECT count(*) FROM users WHERE t IS NULL").fetchone() == (0,)
