"""Job control: ``online jobs`` (active jobs; ``--all``), ``online pause JOB``,
``online cancel JOB``, and steering a running job: ``online set JOB``,
``online throttle JOB [--for 10m]``, ``online unthrottle JOB``."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pgonline.cli.main import run_async
from pgonline.cli.options import dsn_option
from pgonline.engine.journal import Request

F = TypeVar("F", bound=Callable[..., Any])


# --- job control commands ---------------------------------------------------------


@click.command("jobs")
@click.option("--all", "show_all", is_flag=True, help="Include finished jobs.")
@dsn_option
def jobs_cmd(show_all: bool, dsn: str | None) -> None:
    """List jobs that are not finished (running, paused, interrupted, failed)."""
    from pgonline.connection import resolve_dsn
    from pgonline.engine.control import list_jobs
    from pgonline.output import jobs_table

    rows = run_async(functools.partial(list_jobs, resolve_dsn(dsn), include_finished=show_all))
    if not rows and not show_all:
        click.echo("no active jobs (`online jobs --all` includes finished ones)")
        return
    click.echo(jobs_table(rows))


def _stop(req: Request, job_id: int, dsn: str | None, no_wait: bool, timeout: float) -> None:
    from pgonline.connection import resolve_dsn
    from pgonline.engine.control import request_stop

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


@click.command("set")
@click.argument("job_id", type=int)
@click.option("--batch-size", type=click.IntRange(1), default=None, metavar="N",
              help="Rows per batch from the next batch on (the size stops adapting).")
@click.option("--sleep-ms", type=click.IntRange(0), default=None, metavar="MS",
              help="Pause between batches.")
@click.option("--target-batch-ms", type=click.IntRange(1), default=None, metavar="MS",
              help="Adapt the batch size toward this duration per batch.")
@click.option("--max-lag", default=None, metavar="LAG",
              help="Pause while a replica is further behind than this (10s, 16MB).")
@click.option("--max-active-sessions", type=click.IntRange(0), default=None, metavar="N",
              help="Pause while more than N other sessions run a query.")
@click.option("--timeout", type=click.FloatRange(0), default=5.0, show_default=True,
              metavar="SECONDS", help="How long to wait for the runner to apply them.")
@dsn_option
def set_cmd(job_id: int, timeout: float, dsn: str | None, **settings: Any) -> None:
    """Change JOB_ID's batch size, pacing or watchers while it runs (applied at its next batch).

    The settings stay with the job: a later `online resume` applies them too.
    """
    from pgonline.connection import resolve_dsn
    from pgonline.engine.control import change_settings
    from pgonline.safety.lag import parse_lag

    changes = {k: v for k, v in settings.items() if v is not None}
    if "max_lag" in changes:
        parse_lag(changes["max_lag"])  # refused here, not by the runner
    outcome = run_async(functools.partial(change_settings, resolve_dsn(dsn), job_id, changes,
                                          wait_s=timeout))
    click.echo(outcome.message)


class Duration(click.ParamType[float]):
    """``90s``, ``10m``, ``1h30m``, ``2h`` (a bare number is seconds)."""

    name = "duration"
    _PART = re.compile(r"(\d+(?:\.\d+)?)(h|min|m|s|ms)?")
    _SECONDS = {"h": 3600.0, "min": 60.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        pos, total = 0, 0.0
        while pos < len(text):
            m = self._PART.match(text, pos)
            if m is None or m.end() == pos:
                self.fail(f"{value!r} is not a duration (e.g. 90s, 10m, 1h30m)", param, ctx)
            total += float(m.group(1)) * self._SECONDS[m.group(2)]
            pos = m.end()
        if total <= 0:
            self.fail(f"{value!r} is not a positive duration", param, ctx)
        return total


@click.command("throttle")
@click.argument("job_id", type=int)
@click.option("--for", "for_s", type=Duration(), default=None, metavar="DURATION",
              help="Lift it by itself after this long (90s, 10m, 1h); default: until "
                   "`online unthrottle`.")
@dsn_option
def throttle_cmd(job_id: int, for_s: float | None, dsn: str | None) -> None:
    """Hold JOB_ID's backfill before its next batch (it stays consistent and resumable)."""
    from pgonline.connection import resolve_dsn
    from pgonline.engine.control import throttle

    click.echo(run_async(functools.partial(throttle, resolve_dsn(dsn), job_id, for_s)).message)


@click.command("unthrottle")
@click.argument("job_id", type=int)
@dsn_option
def unthrottle_cmd(job_id: int, dsn: str | None) -> None:
    """Let JOB_ID's backfill continue after `online throttle`."""
    from pgonline.connection import resolve_dsn
    from pgonline.engine.control import unthrottle

    click.echo(run_async(functools.partial(unthrottle, resolve_dsn(dsn), job_id)).message)


def register(cli: click.Group) -> None:
    for cmd in (jobs_cmd, pause_cmd, cancel_cmd, set_cmd, throttle_cmd, unthrottle_cmd):
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
