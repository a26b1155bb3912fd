"""The progress bar, seen in a real pseudo-terminal of 80 columns."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time

import psycopg

from tests.support.tables import create_users

# A redraw starts a line again (carriage return, erase line); other escapes are styling.
REDRAW = re.compile(r"\r|\x1b\[2K")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _lines(screen: str) -> list[str]:
    return ANSI.sub("", REDRAW.sub("\n", screen)).splitlines()


def _run_in_pty(args: list[str], *, columns: int = 80, timeout: float = 120.0,
                during: object = None) -> tuple[int, str]:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "pgonline", *args], stdin=slave, stdout=slave,
                            stderr=slave, env=env, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    started = False
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
                if callable(during) and not started and b"rows/s" in b"".join(chunks):
                    started = True
                    during()
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, b"".join(chunks).decode(errors="replace")


def test_the_bar_shows_rows_percent_rate_and_eta_within_80_columns(db, dsn):
    create_users(db, 60_000)
    code, screen = _run_in_pty(["add-column", "users", "t", "text", "--backfill", "md5(email)",
                                "--default", "''", "--not-null", "--batch-size", "1000",
                                "--min-batch-size", "1000", "--max-batch-size", "1000",
                                "--sleep-ms", "10", "--dsn", dsn])
    assert code == 0, screen
    lines = _lines(screen)
    bars = [line for line in lines if "rows/s" in line]
    assert bars, screen
    assert any(re.search(r"\d+/60000", b) and "%" in b and "ETA" in b for b in bars), bars
    assert all(len(b) <= 80 for b in bars), max(bars, key=len)
    assert any("60000/60000" in b and "100.0%" in b for b in bars), bars


def test_a_throttled_bar_says_so_and_prints_the_reason_on_its_own_line(db, dsn):
    create_users(db, 30_000)
    blocker = psycopg.connect(dsn, autocommit=True)
    blocker_pid = blocker.info.backend_pid

    def hold() -> None:
        # Another session runs a query: --max-active-sessions 0 throttles the backfill.
        subprocess.Popen([sys.executable, "-c",
                          f"import psycopg; psycopg.connect({dsn!r}).execute("
                          "'SELECT pg_sleep(1.5)')"])

    try:
        code, screen = _run_in_pty(
            ["add-column", "users", "t", "text", "--backfill", "md5(email)", "--default", "''",
             "--not-null", "--batch-size", "500", "--min-batch-size", "500",
             "--max-batch-size", "500", "--sleep-ms", "20", "--max-active-sessions", "0",
             "--throttle-interval", "0.2", "--dsn", dsn], during=hold)
    finally:
        assert blocker_pid
        blocker.close()
    assert code == 0, screen
    lines = _lines(screen)
    reason_lines = [line for line in lines if "reason=" in line]
    assert reason_lines, lines
    assert all("rows/s" not in line for line in reason_lines)  # the reason has its own line
    bars = [line for line in lines if "rows/s" in line]
    assert any("throttled" in b for b in bars), bars
    assert all(len(b) <= 80 for b in bars), max(bars, key=len)


def test_json_logs_on_a_terminal_draw_no_bar(db, dsn):
    create_users(db, 5000)
    code, screen = _run_in_pty(["--log-format", "json", "add-column", "users", "t", "text",
                                "--backfill", "md5(email)", "--default", "''", "--not-null",
                                "--dsn", dsn])
    assert code == 0, screen
    import json

    for line in screen.replace("\r", "").splitlines():
        # The terminal shows stdout too: the result line is not a log line.
        if line.strip() and not re.fullmatch(r"job 1 finished in \S+ \(\d+ steps run\)", line):
            try:
                json.loads(line)  # every line one JSON object: no bar, no escape codes
            except json.JSONDecodeError:
                raise AssertionError(f"not JSON: {line!r}") from None
