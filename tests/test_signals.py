"""Ctrl-C and SIGTERM: one line on stderr, exit 130 / 143, the journal says "interrupted"."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import spawn_online
from tests.support.tables import create_users

SLOW = ["add-column", "users", "t", "uuid", "--default", "gen_random_uuid()",
        "--batch-size", "50", "--min-batch-size", "50", "--max-batch-size", "50",
        "--sleep-ms", "40"]


def _wait_for_rows(db, proc, minimum: int = 200) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.communicate()
        if db.execute("SELECT to_regclass('pgonline.checkpoints')").fetchone() != (None,):
            row = db.execute("SELECT coalesce(sum(rows_done), 0) FROM pgonline.checkpoints"
                             ).fetchone()
            if row and row[0] >= minimum:
                return
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_job_resumably_with_one_line_and_its_exit_code(db, dsn, online,
                                                                         signum, code):
    create_users(db, 4000)
    proc = spawn_online(["--log-format", "json", *SLOW], dsn)
    try:
        _wait_for_rows(db, proc)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    last = err.strip().splitlines()[-1]
    assert '"event": "error"' in last and "interrupted" in last and "online resume 1" in last
    assert db.execute("SELECT status FROM pgonline.jobs").fetchone() == ("interrupted",)
    r = online("resume", "1")
    assert r.code == 0, r.err


def test_ctrl_c_during_the_demo_exits_130_with_one_line(db, dsn):
    proc = subprocess.Popen([sys.executable, "-m", "pgonline", "demo", "--rows", "200000",
                             "--writers", "2", "--dsn", dsn],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stdout is not None
        while "online add-column" not in seen:
            assert time.monotonic() < deadline and proc.poll() is None, seen
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                seen += os.read(proc.stdout.fileno(), 4096).decode()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "ExceptionGroup" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")], err
