"""Throttles: reasons for the backfill to wait before its next batch.

A throttle answers one question, ``reason(conn)``: a short text when the
backfill should pause now (replica lag, a long transaction, load), or
``None``.  Throttles combine: the engine waits until none of them objects.
Watchers that consult ``pg_stat_activity`` or replicas implement the same
protocol in :mod:`pgonline.watchers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import psycopg

Conn = psycopg.AsyncConnection[Any]


class Throttle(Protocol):
    async def reason(self, conn: Conn) -> str | None:
        """Why to wait now, or ``None`` to proceed."""
        ...


class Throttles:
    """All throttles of a job; ``first_reason`` is the first one that objects."""

    def __init__(self, throttles: Sequence[Throttle] = (), *, poll_s: float = 1.0) -> None:
        self.throttles = list(throttles)
        self.poll_s = poll_s

    async def first_reason(self, conn: Conn) -> str | None:
        for t in self.throttles:
            why = await t.reason(conn)
            if why:
                return why
        return None
