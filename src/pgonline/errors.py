"""The one exception tree of pgonline.

Every error a user can cause or meet derives from :class:`PgOnlineError` and
carries the process exit code the CLI uses for it.  The CLI prints
``error: <message>`` (plus an optional ``hint``) and exits with that code;
anything that is *not* a ``PgOnlineError`` is a bug and keeps its traceback.

Exit codes (documented in README.md):

====  ==========================================================
 1    unexpected internal error (a bug: please report it)
 2    usage error: bad arguments, bad identifier, bad type or expression
 3    catalog conflict: missing table/column, column already exists, ...
 4    pre-flight refused: data would violate the change (NULLs, duplicates)
 5    lock not obtained: retries exhausted while other sessions held locks;
      or the server could not be reached again within --reconnect-timeout
 6    job error: unknown job, job already running, job in a final state
 7    cannot connect to PostgreSQL
 8    migration directory error (naming, checksum, dirty state)
 9    lint found problems
10    a statement failed on the server (message carries the SQLSTATE)
11    fleet mode (--targets): at least one target failed or was not started
      (each target's own code is in the summary)
130   interrupted (Ctrl-C); the job is resumable
143   terminated (SIGTERM); the job is resumable (the CLI maps Interrupted to it)
====  ==========================================================
"""

from __future__ import annotations


class PgOnlineError(Exception):
    """Root of every error pgonline raises on purpose."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None,
                 sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.sqlstate = sqlstate  # the server's error code, when the server raised it


class UsageError(PgOnlineError):
    """The arguments cannot be turned into a plan (bad identifier, type, expression)."""

    exit_code = 2


class CatalogError(PgOnlineError):
    """The database's current schema conflicts with the request."""

    exit_code = 3


class PreflightError(PgOnlineError):
    """Existing data would violate the change; nothing was modified."""

    exit_code = 4


class LockUnavailableError(PgOnlineError):
    """Our DDL kept timing out waiting for a lock; we gave up instead of queueing."""

    exit_code = 5
    # The session seen blocking our lock when we gave up (safety.blockers.Blocker), if any.
    blocker: object | None = None


class ConnectionLost(PgOnlineError):
    """Our session ended and the server could not be reached again in time; resumable."""

    exit_code = 5


class JobError(PgOnlineError):
    """A job in the journal cannot be acted on as asked."""

    exit_code = 6


class ConnectError(PgOnlineError):
    """PostgreSQL could not be reached."""

    exit_code = 7


class MigrationError(PgOnlineError):
    """A migration directory or its tracking table is in a state we refuse to touch."""

    exit_code = 8


class LintFailed(PgOnlineError):
    """Lint reported findings at or above the failing severity."""

    exit_code = 9


class StatementError(PgOnlineError):
    """A statement of the plan failed on the server with a non-retryable error."""

    exit_code = 10


class FleetFailed(PgOnlineError):
    """Fleet mode: some targets failed or were not started; the summary names each one's code."""

    exit_code = 11


class Interrupted(PgOnlineError):
    """The user interrupted a job; it can be resumed from the journal."""

    exit_code = 130


class JobPaused(Interrupted):
    """`online pause` was honoured: the job stopped between batches or steps, resumable."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} paused on request",
                         hint=f"continue with `online resume {job_id}`")
        self.job_id = job_id


class JobCancelled(JobError):
    """`online cancel` was honoured: the job stopped for good; rollback undoes it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} cancelled on request",
                         hint=f"the table is consistent; undo the expand phase with "
                         f"`online rollback {job_id}`")
        self.job_id = job_id

