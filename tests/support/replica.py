"""A real primary + streaming replica pair, from local PostgreSQL binaries.

The primary comes from :func:`pgonline.devtools.local_server.start_from_bindir`; the
replica is a ``pg_basebackup -R`` of it started with ``pg_ctl`` on another
port.  Tests create lag by pausing replay on the replica
(``pg_wal_replay_pause()``) while the primary keeps writing WAL.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg

from pgonline.devtools.local_server import (
    LocalServer,
    _os_user_for_server,
    embedded_bindir,
    free_port,
    run_pg,
    start_from_bindir,
)

PG15 = Path("/usr/lib/postgresql/15/bin")


def usable_bindir(preferred: str | None = None) -> tuple[Path | None, str]:
    """A bin dir whose tools the server OS user can run (and why not, when there is none)."""
    candidates: list[Path] = []
    if preferred:
        candidates.append(Path(preferred))
    with suppress(ImportError):
        candidates.append(embedded_bindir())
    candidates.append(PG15)
    run_as = _os_user_for_server()
    reasons = []
    for b in candidates:
        if not (b / "pg_basebackup").exists():
            reasons.append(f"{b}: no pg_basebackup")
            continue
        cmd = [str(b / "postgres"), "--version"]
        if run_as is not None:
            cmd = ["runuser", "-u", run_as, "--", *cmd]
        if subprocess.run(cmd, capture_output=True, check=False).returncode == 0:
            return b, ""
        reasons.append(f"{b}: not executable by OS user {run_as}")
    return None, "; ".join(reasons)


@dataclass
class Replica:
    dsn: str
    port: int
    base_dir: Path
    data: Path
    bindir: Path
    run_as: str | None

    def stop(self) -> None:
        try:
            run_pg(self.bindir, "pg_ctl", ["-D", str(self.data), "-m", "immediate", "-w", "stop"],
                   self.run_as)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def dsn_for(self, dbname: str) -> str:
        return self.dsn.rsplit("/", 1)[0] + f"/{dbname}"


def start_replica(primary: LocalServer) -> Replica:
    assert primary.bindir is not None and primary.port is not None
    base = Path(tempfile.mkdtemp(prefix="pgonline-replica-"))
    base.chmod(0o755)
    if primary.run_as is not None:
        pw = pwd.getpwnam(primary.run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    data = base / "data"
    run_pg(primary.bindir, "pg_basebackup",
           ["-D", str(data), "-R", "-X", "stream", "-c", "fast", "--no-sync",
            "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"], primary.run_as)
    port = free_port()
    with open(data / "postgresql.conf", "a") as f:
        # Later lines win: the copied file still carries the primary's port and socket dir.
        f.write(f"\n# replica\nport = {port}\nunix_socket_directories = '{base}'\n"
                "hot_standby = on\nwal_receiver_status_interval = 1s\n")
    run_pg(primary.bindir, "pg_ctl", ["-D", str(data), "-l", str(base / "server.log"), "-w",
                                      "-t", "60", "start"], primary.run_as)
    replica = Replica(f"postgresql://postgres@127.0.0.1:{port}/postgres", port, base, data,
                      primary.bindir, primary.run_as)
    wait_streaming(primary.dsn)
    return replica


def wait_streaming(primary_dsn: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'").fetchone()
            if row and row[0]:
                return
            time.sleep(0.1)
    raise TimeoutError("replica did not start streaming")


def wait_caught_up(primary_dsn: str, timeout: float = 30.0) -> None:
    """Until every standby has replayed everything the primary has written so far."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        target = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert target is not None
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT bool_and(replay_lsn >= %s::pg_lsn), count(*) FROM pg_stat_replication",
                [target[0]]).fetchone()
            if row and row[0] and row[1]:
                return
            time.sleep(0.1)
    raise TimeoutError("replica did not catch up")


@contextmanager
def primary_and_replica(bindir: Path) -> Iterator[tuple[LocalServer, Replica]]:
    primary = start_from_bindir(bindir, settings={"wal_level": "replica", "max_wal_senders": "5"})
    try:
        replica = start_replica(primary)
        try:
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()
