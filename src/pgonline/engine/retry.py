"""Which server errors are worth retrying, decided by SQLSTATE class only.

A DDL statement that hits ``lock_timeout`` (55P03) gave up *so that* the
application was not queued behind it; trying again a little later, with
jitter so several runners do not stampede, is the whole point.  Message text
is never inspected: it is translated and changes between versions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from pgonline.errors import LockUnavailableError

log = structlog.get_logger("pgonline.engine.retry")

T = TypeVar("T")

RETRYABLE: tuple[type[psycopg.Error], ...] = (
    psycopg.errors.LockNotAvailable,  # 55P03: lock_timeout expired
    psycopg.errors.QueryCanceled,  # 57014: statement_timeout (or a DBA's cancel)
    psycopg.errors.SerializationFailure,  # 40001
    psycopg.errors.DeadlockDetected,  # 40P01
)


def is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, RETRYABLE)


# Our session ended, not our statement: the server terminated the backend
# (57P01, e.g. pg_terminate_backend or a fast shutdown), crashed (57P02) or is
# starting up again (57P03).  Other SQLSTATE classes, 57014 (a cancel) included,
# leave the session usable and are handled per statement.
CONNECTION_ENDED_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def is_connection_lost(exc: BaseException) -> bool:
    """True if ``exc`` means the session is gone (so reconnecting, not retrying, helps).

    Decided by exception type and SQLSTATE only: an ``OperationalError`` without
    a SQLSTATE is raised by libpq itself (socket closed, server unreachable,
    "the connection is closed"), class 08 is a connection exception, and an
    ``InterfaceError`` is a use of a connection psycopg already knows is closed.
    """
    if isinstance(exc, psycopg.InterfaceError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = exc.sqlstate
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in CONNECTION_ENDED_SQLSTATES


def _before_sleep(what: str) -> Callable[[RetryCallState], None]:
    def hook(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        sqlstate = getattr(exc, "sqlstate", None)
        log.warning("retrying", step=what, attempt=state.attempt_number, sqlstate=sqlstate,
                    wait_s=round(state.upcoming_sleep, 3))

    return hook


async def with_retries(what: str, fn: Callable[[], Awaitable[T]], *, attempts: int,
                       max_wait_s: float = 10.0,
                       on_retry: Callable[[BaseException], None] | None = None) -> T:
    """Run ``fn`` until it succeeds, retrying retryable SQLSTATEs with jittered backoff."""

    def retry_pred(exc: BaseException) -> bool:
        ok = is_retryable(exc)
        if ok and on_retry is not None:
            on_retry(exc)
        return ok

    try:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(retry_pred),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.1, max=max_wait_s),
            before_sleep=_before_sleep(what),
            reraise=False,
        ):
            with attempt:
                return await fn()
    except RetryError as err:
        last = err.last_attempt.exception()
        sqlstate = getattr(last, "sqlstate", None)
        raise LockUnavailableError(
            f"{what}: gave up after {attempts} attempts (last SQLSTATE {sqlstate})",
            hint="another session holds a conflicting lock or the batch keeps timing out; "
            "see blockers with `SELECT * FROM pg_stat_activity`, then `online resume`",
            sqlstate=sqlstate,
        ) from last
    raise AssertionError("unreachable")  # pragma: no cover
