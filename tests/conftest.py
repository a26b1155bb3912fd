"""Test fixtures: one real PostgreSQL per session, a fresh database per test."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from pgonline.connection import with_database
from tests.support.servers import TestServer, test_server

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[TestServer]:
    with test_server() as server:
        yield server


def pytest_report_header(config: pytest.Config) -> str:
    return "pgonline test server: PGONLINE_TEST_DSN > docker > PGONLINE_TEST_PGBIN > embedded"


@pytest.fixture
def dsn(pg_server: TestServer) -> Iterator[str]:
    """A DSN to a brand-new, empty database that is dropped after the test."""
    name = f"t_{os.getpid()}_{next(_counter)}"
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    yield with_database(pg_server.dsn, name)
    with psycopg.connect(pg_server.dsn, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name]
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """An autocommit connection to the test's database, for setup and assertions."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def online(dsn: str, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the ``online`` CLI in-process against the test database."""
    from pgonline.cli.main import run

    def invoke(*args: str, with_dsn: bool = True) -> CliResult:
        argv = list(args)
        if with_dsn and "--dsn" not in argv:
            argv += ["--dsn", dsn]
        capsys.readouterr()
        code = run(argv)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke


def spawn_online(args: list[str], dsn: str, **kw: object) -> subprocess.Popen[str]:
    """Start ``online`` as a separate process (for kill -9 and Ctrl-C tests)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pgonline", *args, "--dsn", dsn],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,  # type: ignore[call-overload]
    )
