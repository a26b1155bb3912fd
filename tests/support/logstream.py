"""Follow the JSON-lines log (stderr) of a spawned ``online --log-format json`` process."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class LogStream:
    """Reads the process's stderr on a thread; ``wait_for`` returns the first matching event."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.events: list[Event] = []
        self.raw: list[str] = []
        self._q: queue.Queue[Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self._seen = 0

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.raw.append(line)
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            self._q.put(ev)
        self._q.put(None)

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 30.0) -> Event:
        deadline = time.monotonic() + timeout
        for ev in self.events[self._seen:]:
            self._seen += 1
            if pred(ev):
                return ev
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching log event; stderr so far:\n{''.join(self.raw)}")
            try:
                got = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if got is None:
                raise AssertionError(f"process ended first; stderr:\n{''.join(self.raw)}")
            self.events.append(got)
            self._seen = len(self.events)
            if pred(got):
                return got

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout)
        self._thread.join(timeout)
        while True:
            try:
                rest = self._q.get_nowait()
            except queue.Empty:
                break
            if rest is not None:
                self.events.append(rest)
        return code
