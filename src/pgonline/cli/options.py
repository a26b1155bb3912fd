"""The options every schema-change command shares, and the RunContext built from them.

``exec_options`` adds the execution options (``--dry-run``, ``--phase``,
``--lock-timeout``, batches, ...) and the production-safety watchers
(``--max-lag``, ``--replica-dsn``, ``--max-xact-age``,
``--max-active-sessions``, ``--throttle-query``/``--throttle-max``,
``--throttle-interval``, ``--cancel-blockers-after``); ``build_context``
turns their values into one :class:`RunContext`, throttles included, which
the command passes down explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from pgonline.connection import SessionSettings, resolve_dsn
from pgonline.engine.backfill import BatchOptions
from pgonline.engine.change import RunContext
from pgonline.engine.executor import ExecOptions
from pgonline.engine.plan import Phase
from pgonline.engine.progress import Progress
from pgonline.errors import UsageError
from pgonline.safety.activity import ActiveSessions, LongTransactions
from pgonline.safety.lag import PrimaryLag, ReplicaLag, parse_lag
from pgonline.safety.load import QueryThrottle
from pgonline.safety.throttle import Throttle, Throttles

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger("pgonline.safety")


_THROTTLE_OPTIONS = [
    click.option("--max-lag", default=None, metavar="LAG",
                 help="Pause the backfill while a replica is further behind than this: "
                      "seconds (10, 500ms, 2min) or WAL bytes (64kB, 16MB).  Measured on the "
                      "primary's pg_stat_replication unless --replica-dsn is given."),
    click.option("--replica-dsn", multiple=True, metavar="DSN",
                 help="Measure --max-lag on this standby instead (repeatable)."),
    click.option("--max-xact-age", type=click.FloatRange(0, min_open=True), default=None,
                 metavar="SECONDS",
                 help="Pause while another session's transaction (active or idle in "
                      "transaction) is older than this."),
    click.option("--max-active-sessions", type=click.IntRange(0), default=None,
                 metavar="N", help="Pause while more than N other sessions run a query."),
    click.option("--throttle-query", default=None, metavar="SQL",
                 help="A read-only SELECT returning one number; pause while it is "
                      "greater than --throttle-max."),
    click.option("--throttle-max", type=float, default=None, metavar="X",
                 help="Threshold for --throttle-query."),
    click.option("--throttle-interval", type=click.FloatRange(0.05), default=1.0,
                 show_default=True, metavar="SECONDS",
                 help="How often a paused backfill re-checks its throttles."),
]
# Every change with a locking step (cut-over) takes it; the watchers above only
# pace backfills.
_CUTOVER_OPTIONS = [
    click.option("--cancel-blockers-after", type=click.FloatRange(0, min_open=True),
                 default=None, metavar="SECONDS",
                 help="Cut-over steps only: once lock attempts have failed this long, "
                      "pg_cancel_backend the sessions blocking our lock (off by default)."),
]

THROTTLE_OPTION_NAMES = ("max_lag", "replica_dsn", "max_xact_age", "max_active_sessions",
                         "throttle_query", "throttle_max", "throttle_interval",
                         "cancel_blockers_after")


def build_throttles(kw: dict[str, Any]) -> Throttles:
    """Remove the throttle options from ``kw`` and build the job's Throttles (validated)."""
    values = {name: kw.pop(name, None) for name in THROTTLE_OPTION_NAMES}
    items: list[Throttle] = []
    replicas: tuple[str, ...] = values["replica_dsn"] or ()
    if values["max_lag"] is not None:
        limit = parse_lag(values["max_lag"])
        for dsn in replicas:
            try:
                conninfo_to_dict(dsn)
            except psycopg.ProgrammingError:
                raise UsageError("invalid --replica-dsn",
                                 hint="give a connection string like "
                                      "postgresql://user@replica-host/db") from None
        items += [ReplicaLag(d, limit) for d in replicas] if replicas else [PrimaryLag(limit)]
    elif replicas:
        raise UsageError("--replica-dsn needs --max-lag", hint="e.g. --max-lag 10s")
    if values["max_xact_age"] is not None:
        items.append(LongTransactions(values["max_xact_age"]))
    if values["max_active_sessions"] is not None:
        items.append(ActiveSessions(values["max_active_sessions"]))
    query, qmax = values["throttle_query"], values["throttle_max"]
    if (query is None) != (qmax is None):
        raise UsageError("--throttle-query and --throttle-max go together",
                         hint="e.g. --throttle-query \"SELECT count(*) FROM pg_stat_activity "
                              "WHERE state = 'active'\" --throttle-max 20")
    if query is not None and qmax is not None:
        items.append(QueryThrottle(query, qmax))
    throttles = Throttles(items, poll_s=values["throttle_interval"] or 1.0,
                          cancel_blockers_after_s=values["cancel_blockers_after"])
    if throttles.throttles or throttles.cancel_blockers_after_s is not None:
        log.info("safety watchers", throttles=throttles.describe(),
                 cancel_blockers_after_s=throttles.cancel_blockers_after_s)
    return throttles


def dsn_option(f: F) -> F:
    return click.option(
        "--dsn", envvar="DATABASE_URL", default=None, metavar="DSN",
        help="PostgreSQL connection string (default: $DATABASE_URL, else the PG* variables "
        "and ~/.pgpass, as psql).",
    )(f)


_BATCH = BatchOptions()
_SESSION = SessionSettings()
_EXEC = ExecOptions()
# More parts than this only add connections: batches are bound by the server's cores and WAL.
MAX_WORKERS = 64


def execution_options(*, backfill: bool = True, index_build: bool = True,
                      contract: bool = True) -> Callable[[F], F]:
    """The options of a command that changes the schema, for what its plans can hold.

    Every such command takes ``--dry-run``, ``--phase``, the lock and retry
    options and ``--cancel-blockers-after``; a command whose plans may run a
    backfill also takes the batch options and the watchers, one that builds
    an index ``--parallel-workers``, one with a contract phase after others
    ``--postpone-contract``.  ``online <kind> --help`` so lists only what applies.
    """
    core = [
        click.option("--dry-run", is_flag=True,
                     help="Print the plan (steps, phases, locks); change nothing."),
        click.option("--phase", type=click.Choice([p.value for p in Phase]), default=None,
                     help="Run only this phase (deploy application code between phases)."),
        click.option("--max-retries", type=click.IntRange(1), default=30, show_default=True,
                     help="Attempts per step (and per batch) on lock/timeout/serialization errors."),
    ]
    postpone = [
        click.option("--postpone-contract", is_flag=True,
                     help="Stop before the contract phase (cut-over), \"waiting for cut-over\", "
                          "until `online resume JOB`."),
    ]
    batches = [
        click.option("--batch-size", type=click.IntRange(1), default=_BATCH.initial_size,
                     show_default=True, help="Rows in the first backfill batch."),
        click.option("--min-batch-size", type=click.IntRange(1), default=_BATCH.min_size,
                     show_default=True),
        click.option("--max-batch-size", type=click.IntRange(1), default=_BATCH.max_size,
                     show_default=True),
        click.option("--target-batch-ms", type=click.IntRange(1), default=_BATCH.target_ms,
                     show_default=True, help="Adapt the batch size toward this duration per batch."),
        click.option("--sleep-ms", type=click.IntRange(0), default=_BATCH.sleep_ms, show_default=True,
                     help="Pause between batches, leaving room for application traffic."),
        click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=_EXEC.workers,
                     show_default=True, metavar="N",
                     help="Backfill with N connections at once, each walking its own part of "
                          "the key range (resumable per part). Never takes the connection slots "
                          "the application needs."),
        click.option("--batch-timeout", "batch_timeout_ms", type=click.IntRange(1),
                     default=_BATCH.statement_timeout_ms, show_default=True, metavar="MS",
                     help="statement_timeout of one batch."),
        click.option("--no-vacuum", "skip_vacuum", is_flag=True,
                     help="Skip the VACUUM (ANALYZE) step after the backfill (autovacuum then "
                          "cleans up, and a later step may wait for it)."),
        click.option("--vacuum-cost-delay", "vacuum_cost_delay_ms", type=click.FloatRange(0),
                     default=_SESSION.vacuum_cost_delay_ms, show_default=True, metavar="MS",
                     help="vacuum_cost_delay of that VACUUM (0: unthrottled)."),
    ]
    sessions = [
        click.option("--lock-timeout", "lock_timeout_ms", type=click.IntRange(1),
                     default=_SESSION.lock_timeout_ms, show_default=True, metavar="MS",
                     help="Give up waiting for a lock after this long, then retry."),
        click.option("--reconnect-timeout", "reconnect_timeout_s", type=click.FloatRange(0),
                     default=_EXEC.reconnect_timeout_s, show_default=True, metavar="SECONDS",
                     help="When the server ends our session (terminated backend, restart, "
                          "failover), try to reconnect for up to this long and continue the "
                          "job once connected; past it, stop resumably (exit 5)."),
        click.option("--maintenance-wait", "maintenance_wait_s", type=click.FloatRange(0),
                     default=_SESSION.maintenance_wait_s, show_default=True, metavar="SECONDS",
                     help="Before a locking step, wait this long at most, outside the lock queue, "
                          "for a VACUUM, ANALYZE or index build on the table to finish."),
    ]
    builds = [
        click.option("--parallel-workers", "maintenance_workers", type=click.IntRange(0),
                     default=_SESSION.maintenance_workers, show_default=True, metavar="N",
                     help="max_parallel_maintenance_workers for index builds (0: one core; "
                          "raise it on a server with cores to spare)."),
    ]
    chosen = [*core, *(postpone if contract else []), *(batches if backfill else []),
              *sessions, *(builds if index_build else []),
              *(_THROTTLE_OPTIONS if backfill else []), *_CUTOVER_OPTIONS]

    def decorate(f: F) -> F:
        for opt in reversed(chosen):
            f = opt(f)
        return f

    return decorate


# Every option: commands that may run any plan (resume, migrate --online).
exec_options = execution_options()


def throttle_options(f: F) -> F:
    """The watcher/throttle options alone (``migrate``'s runs take them too)."""
    for opt in reversed([*_THROTTLE_OPTIONS, *_CUTOVER_OPTIONS]):
        f = opt(f)
    return f


def build_context(dsn: str | None, kw: dict[str, Any]) -> RunContext:
    """Take the execution options out of ``kw`` (those a command lacks: their defaults)."""
    phase = kw.pop("phase", None)
    settings = SessionSettings(
        lock_timeout_ms=kw.pop("lock_timeout_ms"), maintenance_wait_s=kw.pop("maintenance_wait_s"),
        maintenance_workers=kw.pop("maintenance_workers", _SESSION.maintenance_workers),
        vacuum_cost_delay_ms=kw.pop("vacuum_cost_delay_ms", _SESSION.vacuum_cost_delay_ms))
    low, initial, high = _batch_sizes(kw.pop("min_batch_size", _BATCH.min_size),
                                      kw.pop("batch_size", _BATCH.initial_size),
                                      kw.pop("max_batch_size", _BATCH.max_size))
    batch = BatchOptions(
        initial_size=initial, min_size=low, max_size=high,
        target_ms=kw.pop("target_batch_ms", _BATCH.target_ms),
        sleep_ms=kw.pop("sleep_ms", _BATCH.sleep_ms),
        statement_timeout_ms=kw.pop("batch_timeout_ms", _BATCH.statement_timeout_ms),
        max_attempts=kw["max_retries"],
    )
    options = ExecOptions(
        settings=settings, batch=batch,
        max_attempts=kw.pop("max_retries"), phase=Phase(phase) if phase else None,
        reconnect_timeout_s=kw.pop("reconnect_timeout_s"),
        postpone_contract=kw.pop("postpone_contract", False),
        skip_vacuum=kw.pop("skip_vacuum", False),
        workers=kw.pop("workers", _EXEC.workers),
    )
    return RunContext(dsn=resolve_dsn(dsn), options=options, progress=Progress(),
                      throttles=build_throttles(kw), dry_run=kw.pop("dry_run"), out=click.echo)


def _batch_sizes(low: int, initial: int, high: int) -> tuple[int, int, int]:
    """--min-batch-size <= --batch-size <= --max-batch-size, defaults yielding to what was given.

    A lone ``--max-batch-size 500`` lowers the default first (and minimum)
    batch to 500 instead of being refused; only sizes the user gave
    themselves can contradict each other.
    """
    ctx = click.get_current_context(silent=True)
    names = ("min_batch_size", "batch_size", "max_batch_size")
    given = [ctx is None or ctx.get_parameter_source(n) not in _DEFAULTED for n in names]
    values = [low, initial, high]
    chosen = [v for v, g in zip(values, given, strict=True) if g]
    if chosen != sorted(chosen):
        raise click.BadParameter("need --min-batch-size <= --batch-size <= --max-batch-size")
    if not given[2]:
        high = max([high, *chosen])
    if not given[0]:
        low = min([low, *chosen])
    if not given[1]:
        initial = min(max(initial, low), high)
    return low, initial, high


_DEFAULTED = (click.core.ParameterSource.DEFAULT, click.core.ParameterSource.DEFAULT_MAP)
