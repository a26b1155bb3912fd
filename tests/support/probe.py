"""A reader that measures how long application queries wait while a change runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg


@contextmanager
def reader_latencies(dsn: str, query: str, *, pause_s: float = 0.01) -> Iterator[list[float]]:
    """Run ``query`` in a loop on its own connection; yield the list of latencies (ms)."""
    latencies: list[float] = []
    stop = threading.Event()

    def reader() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                t = time.monotonic()
                conn.execute(query).fetchone()  # type: ignore[arg-type]
                latencies.append((time.monotonic() - t) * 1000)
                time.sleep(pause_s)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join()
