"""Fleet mode: one command run against many databases, N at a time.

Each target is an independent run: its own connections, its own journal (in
that database), its own job.  This module only schedules them and collects
one :class:`TargetResult` per target; what runs on a target is the caller's
async callable (a change, a migration run, a status query).

* ``concurrency`` workers take the next target in file order; a failure on
  one target is recorded and the others go on (``stop_on_error`` stops
  *starting* targets after the first failure; running ones finish).
* ``canary`` K: the first K targets run first, alone; if any of them fails,
  no other target is started.
* Ctrl-C / SIGTERM cancels every running target: each one's executor journals
  its job as interrupted (resumable, as for one database) and the targets not
  started yet are listed as such; :func:`run_fleet` still returns every
  result, and ``interrupted`` says the fleet was stopped.
* Every log line of a target carries ``database=`` (its DSN without the
  password; ``target`` already names a job's table), bound per task with
  structlog's contextvars.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from pgonline.errors import Interrupted, JobPaused, PgOnlineError, UsageError
from pgonline.redaction import redact

log = structlog.get_logger("pgonline.fleet")

NOT_STARTED = "not started"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Target:
    """One line of a targets file: a DSN or a libpq service name."""

    dsn: str
    line: int
    # What output and logs show: the DSN with its password replaced by ***.
    label: str


@dataclass(frozen=True)
class Outcome:
    """What a target's run reports when it returns (its errors are raised)."""

    # A success: the target did what it was asked (or had done it already), or
    # stopped where its plan says a human decides (a phase gate, a postponed
    # cut-over), or only showed what it would do.
    result: str
    rows: int | None = None
    job_id: int | None = None
    detail: str | None = None


@dataclass
class TargetResult:
    target: str
    result: str = NOT_STARTED
    exit_code: int | None = None
    seconds: float | None = None
    rows: int | None = None
    job_id: int | None = None
    error: str | None = None
    # True: succeeded; False: failed or stopped; None: not started.
    ok: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "result": self.result, "exit_code": self.exit_code,
                "duration_s": None if self.seconds is None else round(self.seconds, 3),
                "rows": self.rows, "job_id": self.job_id, "error": self.error}


@dataclass(frozen=True)
class FleetOptions:
    concurrency: int = 1
    canary: int = 0
    stop_on_error: bool = False


@dataclass
class FleetRun:
    results: list[TargetResult]
    interrupted: bool = False
    # Why targets were left unstarted (canary failed, --stop-on-error), if they were.
    stopped_because: str | None = None
    _stop: bool = field(default=False, repr=False)
    # Set once a target was interrupted by a signal: no worker starts another.
    _halted: bool = field(default=False, repr=False)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if r.ok is False]

    @property
    def all_ok(self) -> bool:
        return all(r.ok for r in self.results)


def parse_targets(text: str, source: str = "targets file") -> list[Target]:
    """One DSN (URI or key=value) or libpq service name per line; ``#`` starts a comment.

    A comment is a line whose first non-blank character is ``#``, or ``#``
    after whitespace (a password may contain ``#`` itself, never preceded by
    a blank inside a URI).  A bare word is a service name (``service=NAME``,
    looked up in pg_service.conf by libpq).  Duplicates are refused: two runs
    of one change on one database would race for its job.
    """
    found: list[Target] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if not line:
            continue
        dsn = line if ("=" in line or "://" in line) else f"service={line}"
        try:
            conninfo_to_dict(dsn)
        except psycopg.ProgrammingError as exc:
            raise UsageError(f"{source}, line {number}: not a DSN or service name "
                             f"({redact(str(exc)).strip()})") from None
        if dsn in seen:
            raise UsageError(f"{source}, line {number}: the same target as line {seen[dsn]}",
                             hint="list each database once")
        seen[dsn] = number
        found.append(Target(dsn=dsn, line=number, label=redact(line)))
    if not found:
        raise UsageError(f"{source} lists no target", hint="one DSN or service name per line")
    return found


def _strip_comment(line: str) -> str:
    if line.lstrip().startswith("#"):
        return ""
    for i, ch in enumerate(line):
        if ch == "#" and i > 0 and line[i - 1] in " \t":
            return line[:i]
    return line


def read_targets(path: Path) -> list[Target]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read targets file {path}: {exc.strerror}") from None
    return parse_targets(text, str(path))


Work = Callable[[Target], Awaitable[Outcome]]


async def run_fleet(targets: Sequence[Target], work: Work, opts: FleetOptions) -> FleetRun:
    """Run ``work`` on every target; return every target's result, even when interrupted."""
    run = FleetRun([TargetResult(t.label) for t in targets])
    pending = list(zip(targets, run.results, strict=True))
    canary = pending[:opts.canary] if opts.canary else []
    rest = pending[len(canary):]
    try:
        if canary:
            await _wave(run, canary, work, opts)
            bad = [res for _, res in canary if not res.ok]
            if bad and not run._halted:
                run.stopped_because = (f"canary failed on {bad[0].target}: "
                                       f"no other target was started")
                log.error("canary failed; stopping the fleet", database=bad[0].target,
                          result=bad[0].result)
                return run
        await _wave(run, rest, work, opts)
    except anyio.get_cancelled_exc_class():
        # Ctrl-C/SIGTERM: every running target has journaled itself as
        # interrupted (its executor does so, shielded) before we get here.
        run.interrupted = True
    run.interrupted = run.interrupted or run._halted
    if run.interrupted:
        for res in run.results:
            if res.result == NOT_STARTED:
                res.error = "not started (interrupted)"
    return run


async def _wave(run: FleetRun, items: list[tuple[Target, TargetResult]], work: Work,
                opts: FleetOptions) -> None:
    queue = iter(items)

    async def worker() -> None:
        for target, res in queue:
            if run._stop or run._halted:
                return
            await _one(run, target, res, work, opts)

    workers = max(1, min(opts.concurrency, len(items)))
    async with anyio.create_task_group() as tg:
        for _ in range(workers):
            tg.start_soon(worker)


async def _one(run: FleetRun, target: Target, res: TargetResult, work: Work,
               opts: FleetOptions) -> None:
    t0 = time.monotonic()
    res.result = "running"
    with structlog.contextvars.bound_contextvars(database=target.label):
        log.info("target started", line=target.line)
        try:
            outcome = await work(target)
        except JobPaused as exc:
            # `online pause JOB` on that database: an operator's decision, resumable.
            _failed(res, "paused on request", exc, t0)
            log.warning("target paused on request", job=res.job_id)
            return
        except Interrupted as exc:
            # Ctrl-C / SIGTERM reached this target's executor: its job is journaled
            # as interrupted (resumable).  The whole fleet is stopping: this
            # worker takes no further target.
            _failed(res, INTERRUPTED, exc, t0)
            run._halted = True
            log.warning("target interrupted", job=res.job_id)
            return
        except PgOnlineError as exc:
            _failed(res, "failed", exc, t0)
            log.error("target failed", exit_code=exc.exit_code, error=res.error)
            if opts.stop_on_error and not run._stop:
                run._stop = True
                run.stopped_because = (f"--stop-on-error: {target.label} failed; "
                                       f"no further target was started")
            return
        except anyio.get_cancelled_exc_class():
            # Cancelled before a job existed (connecting, planning): nothing to journal.
            res.result, res.exit_code, res.ok = INTERRUPTED, 130, False
            res.seconds = time.monotonic() - t0
            res.error = "interrupted before its job started"
            raise
        res.result, res.exit_code, res.ok = outcome.result, 0, True
        res.seconds = time.monotonic() - t0
        res.rows, res.job_id, res.error = outcome.rows, outcome.job_id, outcome.detail
        log.info("target finished", result=res.result, duration_s=round(res.seconds, 3),
                 rows=res.rows, job=res.job_id)


def _failed(res: TargetResult, result: str, exc: PgOnlineError, t0: float) -> None:
    res.result, res.exit_code, res.ok = result, exc.exit_code, False
    res.seconds = time.monotonic() - t0
    res.error = redact(exc.message)
    job_id = getattr(exc, "job_id", None)
    res.job_id = job_id if isinstance(job_id, int) else _job_in(exc.message)


def _job_in(message: str) -> int | None:
    """The job a stopped run names ("job 3 interrupted; ..."), for the summary."""
    words = message.split()
    if len(words) >= 2 and words[0] == "job" and words[1].rstrip(":").isdigit():
        return int(words[1].rstrip(":"))
    return None
