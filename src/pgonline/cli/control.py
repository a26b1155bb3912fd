"""Job control: ``online jobs`` (active jobs; ``--all``), ``online pause JOB``,
``online cancel JOB``."""

from __future__ import annotations

import functools
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


def register(cli: click.Group) -> None:
    for cmd in (jobs_cmd, pause_cmd, cancel_cmd):
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
