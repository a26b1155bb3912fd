"""Getting our session back after the server ended it.

A terminated backend (``pg_terminate_backend``, a fast shutdown), a restart or
a failover ends the session that runs a job, but not the job: everything it
did is in the journal, committed together with the work itself.  So the
executor reconnects (here: jittered exponential backoff, bounded by
``--reconnect-timeout``), re-reads the journal and continues.

Why continuing is safe:

* the lost transaction (a DDL step with its "done" row, or a backfill batch
  with its checkpoint) either committed as a whole or not at all, so the
  journal re-read after reconnecting says exactly what is left;
* a non-transactional step (``CREATE INDEX CONCURRENTLY``) runs again through
  its ``done_if`` / ``cleanup_if`` probes, which drop the INVALID index an
  interrupted build leaves behind;
* the job's advisory lock died with the session: it is taken again, and if
  another process took the job meanwhile (``online resume`` elsewhere), we
  stop without writing to the journal, leaving the job to that process.
"""

from __future__ import annotations

import math
import time

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_random_exponential

from pgonline.connection import Conn, connect
from pgonline.errors import ConnectError, JobError

log = structlog.get_logger("pgonline.engine.reconnect")

# First retry after ~0.2 s, then doubling (with full jitter) up to 5 s between
# attempts: quick after a terminated backend, gentle on a server starting up.
_BACKOFF = wait_random_exponential(multiplier=0.2, max=5.0)


class JobTakenOver(JobError):
    """While we were disconnected another process took the job; it is theirs now."""


async def reopen(dsn: str, *, deadline: float, what: str) -> Conn:
    """Connect again until ``deadline`` (``time.monotonic()``); raise the last ConnectError.

    At least one attempt is made, the last one at the deadline, and no attempt
    waits (``connect_timeout``) much past it.
    """

    def wait(state: RetryCallState) -> float:
        return min(_BACKOFF(state), max(0.0, deadline - time.monotonic()))

    def stop(state: RetryCallState) -> bool:
        return time.monotonic() >= deadline

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info("server not reachable yet; retrying", job=what, attempt=state.attempt_number,
                 wait_s=round(state.upcoming_sleep, 2),
                 left_s=round(max(0.0, deadline - time.monotonic()), 1),
                 error=getattr(exc, "message", str(exc)))

    async for attempt in AsyncRetrying(retry=retry_if_exception_type(ConnectError), wait=wait,
                                       stop=stop, before_sleep=before_sleep, reraise=True):
        with attempt:
            left = deadline - time.monotonic()
            return await connect(dsn, connect_timeout_s=max(2, min(10, math.ceil(left))))
    raise AssertionError("unreachable")  # pragma: no cover
