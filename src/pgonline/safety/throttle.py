"""Throttles: reasons for the backfill to wait before its next batch.

A throttle answers one question, ``reason(conn)``: a short text when the
backfill should pause now (replica lag, a long transaction, load), or
``None``.  Throttles combine: the engine waits until none of them objects.
The concrete watchers live in :mod:`pgonline.safety.lag`,
:mod:`pgonline.safety.activity` and :mod:`pgonline.safety.load`.

A throttle may also implement ``prepare(conn)`` (checked once before the job
starts, so a bad setting fails before anything is changed) and ``aclose()``
(release side connections, e.g. to a replica).

The :class:`Throttles` of a command are built by the CLI layer
(``cli.options``) from its options and travel explicitly, in its
:class:`~pgonline.engine.change.RunContext`, to the executor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from pgonline.connection import Conn


class Throttle(Protocol):
    async def reason(self, conn: Conn) -> str | None:
        """Why to wait now, or ``None`` to proceed."""
        ...


@runtime_checkable
class Preparable(Protocol):
    async def prepare(self, conn: Conn) -> None: ...


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


class Throttles:
    """All throttles of a job; ``first_reason`` is the first one that objects.

    ``cancel_blockers_after_s`` is the job's policy for its cut-over steps
    (see :mod:`pgonline.safety.blockers`): ``None`` (the default) never cancels
    another session's query.
    """

    def __init__(self, throttles: Sequence[Throttle] = (), *, poll_s: float = 1.0,
                 cancel_blockers_after_s: float | None = None) -> None:
        self.throttles = list(throttles)
        self.poll_s = poll_s
        self.cancel_blockers_after_s = cancel_blockers_after_s

    async def first_reason(self, conn: Conn) -> str | None:
        for t in self.throttles:
            why = await t.reason(conn)
            if why:
                return why
        return None

    async def prepare(self, conn: Conn) -> None:
        """Check every throttle once (privileges, a user query) before the job changes anything."""
        for t in self.throttles:
            if isinstance(t, Preparable):
                await t.prepare(conn)

    async def aclose(self) -> None:
        for t in self.throttles:
            if isinstance(t, Closable):
                await t.aclose()

    def describe(self) -> list[str]:
        return [repr(t) for t in self.throttles]

    def apply(self, settings: Mapping[str, Any]) -> None:
        """Live thresholds from ``online set`` (``max_lag``, ``max_active_sessions``).

        A watcher the job already has gets the new limit; otherwise one is
        added (lag then measured on the primary, as ``--max-lag`` alone does).
        The values were validated by ``online set``.
        """
        from pgonline.safety.activity import ActiveSessions
        from pgonline.safety.lag import PrimaryLag, ReplicaLag, parse_lag

        if settings.get("max_lag") is not None:
            limit = parse_lag(str(settings["max_lag"]))
            lags: list[PrimaryLag | ReplicaLag] = [
                t for t in self.throttles if isinstance(t, PrimaryLag | ReplicaLag)]
            for lag in lags:
                lag.limit = limit
            if not lags:
                self.throttles.append(PrimaryLag(limit))
        if settings.get("max_active_sessions") is not None:
            n = int(settings["max_active_sessions"])
            sessions: list[ActiveSessions] = [t for t in self.throttles if isinstance(t, ActiveSessions)]
            for watcher in sessions:
                watcher.limit = n
            if not sessions:
                self.throttles.append(ActiveSessions(n))
