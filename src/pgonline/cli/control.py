"""Production-safety CLI: watcher/throttle options on every change command, and job control.

Commands: ``online jobs`` (active jobs; ``--all``), ``online pause JOB``,
``online cancel JOB``.

Options added to every schema-change command (every command with
``--dry-run``, including ``resume``), without touching ``cli.py``:

``--max-lag``, ``--replica-dsn``, ``--max-xact-age``, ``--max-active-sessions``,
``--throttle-query``/``--throttle-max``, ``--throttle-interval``,
``--cancel-blockers-after``.

How: :func:`register` appends the options to each such command's params and
wraps its callback, which removes these keyword arguments, builds a
:class:`~pgonline.safety.throttle.Throttles` from them and makes it current
(:func:`pgonline.safety.throttle.using`) while the original callback runs;
``RunContext`` picks it up by default.  Commands registered by ``pgonline.cli.*``
modules loaded after this one are covered too: ``register`` hooks the
group's ``add_command``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import psycopg
import structlog
from psycopg.conninfo import conninfo_to_dict

from pgonline.cli.main import dsn_option, run_async
from pgonline.engine.journal import Request
from pgonline.errors import UsageError
from pgonline.safety import throttle
from pgonline.safety.activity import ActiveSessions, LongTransactions
from pgonline.safety.lag import PrimaryLag, ReplicaLag, parse_lag
from pgonline.safety.load import QueryThrottle
from pgonline.safety.throttle import Throttle, Throttles

F = TypeVar("F", bound=Callable[..., Any])
log = structlog.get_logger("pgonline.safety")

_MARK = "_pgonline_throttle_options"


def _options() -> list[click.Option]:
    """Fresh option objects (one set per command)."""
    return [
        click.Option(["--max-lag"], default=None, metavar="LAG",
                     help="Pause the backfill while a replica is further behind than this: "
                          "seconds (10, 500ms, 2min) or WAL bytes (64kB, 16MB).  Measured on the "
                          "primary's pg_stat_replication unless --replica-dsn is given."),
        click.Option(["--replica-dsn"], multiple=True, metavar="DSN",
                     help="Measure --max-lag on this standby instead (repeatable)."),
        click.Option(["--max-xact-age"], type=click.FloatRange(0, min_open=True), default=None,
                     metavar="SECONDS",
                     help="Pause while another session's transaction (active or idle in "
                          "transaction) is older than this."),
        click.Option(["--max-active-sessions"], type=click.IntRange(0), default=None,
                     metavar="N", help="Pause while more than N other sessions run a query."),
        click.Option(["--throttle-query"], default=None, metavar="SQL",
                     help="A read-only SELECT returning one number; pause while it is "
                          "greater than --throttle-max."),
        click.Option(["--throttle-max"], type=float, default=None, metavar="X",
                     help="Threshold for --throttle-query."),
        click.Option(["--throttle-interval"], type=click.FloatRange(0.05), default=1.0,
                     show_default=True, metavar="SECONDS",
                     help="How often a paused backfill re-checks its throttles."),
        click.Option(["--cancel-blockers-after"], type=click.FloatRange(0, min_open=True),
                     default=None, metavar="SECONDS",
                     help="Cut-over steps only: once lock attempts have failed this long, "
                          "pg_cancel_backend the sessions blocking our lock (off by default)."),
    ]


OPTION_NAMES = tuple(str(o.name) for o in _options())


def build_throttles(kw: dict[str, Any]) -> Throttles:
    """Remove this module's options from ``kw`` and build the job's Throttles (validated)."""
    values = {name: kw.pop(name, None) for name in OPTION_NAMES}
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
    return Throttles(items, poll_s=values["throttle_interval"] or 1.0,
                     cancel_blockers_after_s=values["cancel_blockers_after"])


def _wrap_callback(cmd: click.Command) -> None:
    original = cmd.callback
    if original is None or getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def callback(*args: Any, **kw: Any) -> Any:
        throttles = build_throttles(kw)
        if throttles.throttles or throttles.cancel_blockers_after_s is not None:
            log.info("safety watchers", throttles=throttles.describe(),
                     cancel_blockers_after_s=throttles.cancel_blockers_after_s)
        with throttle.using(throttles):
            return original(*args, **kw)

    setattr(callback, _MARK, True)
    cmd.callback = callback


def add_throttle_options(cmd: click.Command) -> None:
    """Give ``cmd`` (and, for a group, its subcommands) the throttle options, once."""
    if isinstance(cmd, click.Group):
        for sub in list(cmd.commands.values()):
            add_throttle_options(sub)
        _hook_add_command(cmd)
        return
    if not any(p.name == "dry_run" for p in cmd.params):
        return
    have = {p.name for p in cmd.params}
    cmd.params.extend(o for o in _options() if o.name not in have)
    _wrap_callback(cmd)


def _hook_add_command(group: click.Group) -> None:
    """Commands added to ``group`` later (other pgonline.cli modules) get the options too."""
    if getattr(group, _MARK, False):
        return
    original = group.add_command

    def add_command(cmd: click.Command, name: str | None = None) -> None:
        original(cmd, name)
        add_throttle_options(cmd)

    setattr(group, "add_command", add_command)  # noqa: B010 - instance-level hook
    setattr(group, _MARK, True)


# --- job control commands ---------------------------------------------------------


@click.command("jobs")
@click.option("--all", "show_all", is_flag=True, help="Include finished jobs.")
@dsn_option
def jobs_cmd(show_all: bool, dsn: str | None) -> None:
    """List jobs that are not finished (running, paused, interrupted, failed)."""
    from pgonline.commands.control import list_jobs
    from pgonline.connection import resolve_dsn
    from pgonline.output import jobs_table

    rows = run_async(functools.partial(list_jobs, resolve_dsn(dsn), include_finished=show_all))
    if not rows and not show_all:
        click.echo("no active jobs (`online jobs --all` includes finished ones)")
        return
    click.echo(jobs_table(rows))


def _stop(req: Request, job_id: int, dsn: str | None, no_wait: bool, timeout: float) -> None:
    from pgonline.commands.control import request_stop
    from pgonline.connection import resolve_dsn

    outcome = run_async(functools.partial(request_stop, resolve_dsn(dsn), job_id, req,
                                          wait_s=0.0 if no_wait else timeout))
    click.echo(outcome.message)


_wait_opts = [
    click.option("--no-wait", is_flag=True, help="Return once the request is recorded."),
    click.option("--timeout", type=click.FloatRange(0), default=60.0, show_default=True,
                 metavar="SECONDS", help="How long to wait for the runner to stop."),
]


def _with_wait(f: F) -> F:
    for opt in reversed(_wait_opts):
        f = opt(f)
    return f


@click.command("pause")
@click.argument("job_id", type=int)
@_with_wait
@dsn_option
def pause_cmd(job_id: int, no_wait: bool, timeout: float, dsn: str | None) -> None:
    """Ask running JOB_ID to stop after its current batch or step (resume later)."""
    _stop(Request.PAUSE, job_id, dsn, no_wait, timeout)


@click.command("cancel")
@click.argument("job_id", type=int)
@_with_wait
@dsn_option
def cancel_cmd(job_id: int, no_wait: bool, timeout: float, dsn: str | None) -> None:
    """Stop JOB_ID for good after its current batch or step (then `online rollback`)."""
    _stop(Request.CANCEL, job_id, dsn, no_wait, timeout)


def register(cli: click.Group) -> None:
    for cmd in (jobs_cmd, pause_cmd, cancel_cmd):
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
    add_throttle_options(cli)
