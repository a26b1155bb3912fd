"""``online resume``, ``rollback``, ``status``, ``plan`` and ``demo``: running, undoing and showing jobs."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import click

from pgonline.cli import fleet as fleet_cli
from pgonline.cli.main import report_job, run_async
from pgonline.cli.options import build_context, dsn_option, exec_options, execution_options
from pgonline.connection import resolve_dsn
from pgonline.errors import FleetFailed, UsageError


@click.command("resume")
@click.argument("job_id", type=int)
@dsn_option
@exec_options
def resume_cmd(job_id: int, dsn: str | None, **kw: Any) -> None:
    """Continue JOB_ID from its journal (after Ctrl-C, a crash, a pause or a failure)."""
    from pgonline.engine.jobs import resume, show_plan

    ctx = build_context(dsn, kw)
    if ctx.dry_run:
        click.echo(run_async(functools.partial(show_plan, ctx.dsn, job_id)))
        return
    report_job(run_async(functools.partial(resume, ctx, job_id)))


@click.command("rollback")
@click.argument("job_id", type=int)
@click.option("--confirm", is_flag=True,
              help="Required to roll back a finished job (may discard data written since).")
@dsn_option
@execution_options(backfill=False, contract=False)
def rollback_cmd(job_id: int, confirm: bool, dsn: str | None, **kw: Any) -> None:
    """Undo JOB_ID's completed steps in reverse order (drops what its expand phase added)."""
    from pgonline.engine.jobs import rollback

    ctx = build_context(dsn, kw)
    result = run_async(functools.partial(rollback, ctx, job_id, confirm=confirm))
    if not ctx.dry_run:
        from pgonline.engine.jobs import rollback_summary

        click.echo(rollback_summary(result))


@click.command("status")
@click.argument("job_id", type=int, required=False)
@click.option("--active", is_flag=True, help="Only jobs that are not finished.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Human-readable, or JSON (an object for JOB_ID, else a list).")
@click.option("--watch", is_flag=True, help="Refresh in place until the job ends (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              metavar="SECONDS", help="How often --watch refreshes.")
@dsn_option
@fleet_cli.targets_option
@fleet_cli.concurrency_option
def status_cmd(job_id: int | None, active: bool, fmt: str, watch: bool, interval: float,
               dsn: str | None, targets: Any, concurrency: int) -> None:
    """List jobs with their progress, or JOB_ID in detail: steps, rate, ETA, runner.

    With --targets FILE: the jobs of every database in FILE, in one table
    (each row names its database; one that cannot be read says why).
    """
    from pgonline.engine.jobs import status
    from pgonline.output import jobs_table

    if targets is not None:
        if watch or job_id is not None:
            raise UsageError("--targets lists every database's jobs; --watch and JOB_ID "
                             "take one database (--dsn)")
        fleet_status(fleet_cli.FleetArgs(path=targets, concurrency=concurrency, fmt=fmt),
                     dsn, active)
        return
    target = resolve_dsn(dsn)

    async def render() -> tuple[str, bool]:
        rows = await status(target, job_id=job_id, include_finished=not active)
        ended = job_id is not None and bool(rows) and rows[0].state not in ("running",
                                                                           "throttled")
        if fmt == "json":
            data = [r.to_json() for r in rows]
            return json.dumps(data[0] if job_id is not None else data), ended
        return jobs_table(rows, detail=job_id is not None), ended

    async def show() -> None:
        if not watch:
            click.echo((await render())[0])
            return
        await watch_until(render, interval)

    run_async(show)


def fleet_status(fleet: fleet_cli.FleetArgs, dsn: str | None, active: bool) -> None:
    """``online status --targets FILE``: every target's jobs in one table (or one JSON object)."""
    from pgonline.engine.fleet import FleetOptions, Outcome, Target, run_fleet
    from pgonline.engine.jobs import status
    from pgonline.output import fleet_jobs_table

    if dsn is not None and click.get_current_context().get_parameter_source("dsn") \
            is click.core.ParameterSource.COMMANDLINE:
        raise UsageError("--dsn and --targets exclude each other")
    targets: list[Target] = fleet_cli.read(fleet)
    found: dict[str, list[Any]] = {}

    async def work(t: Target) -> Outcome:
        found[t.label] = await status(t.dsn, job_id=None, include_finished=not active)
        return Outcome("ok", detail=None)

    async def go() -> Any:
        return await run_fleet(targets, work, FleetOptions(concurrency=fleet.concurrency))

    run = run_async(go)
    if fleet.fmt == "json":
        click.echo(json.dumps([{"target": r.target, "error": r.error,
                                "jobs": [j.to_json() for j in found.get(r.target, [])]}
                               for r in run.results]))
    else:
        click.echo(fleet_jobs_table([(r.target, found.get(r.target, []), r.error)
                                     for r in run.results]))
    if run.failed:
        raise FleetFailed(f"{len(run.failed)} of {len(run.results)} target(s) could not be read",
                          hint="the table says why for each")


async def watch_until(render: Callable[[], Awaitable[tuple[str, bool]]], interval: float) -> None:
    """``--watch``: redraw in place on a terminal (else print each refresh) until it ends."""
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console()
    if not console.is_terminal:
        while True:
            text, ended = await render()
            click.echo(text)
            if ended:
                return
            await anyio.sleep(interval)
    with Live(console=console, auto_refresh=False) as live:
        while True:
            text, ended = await render()
            live.update(Text(text), refresh=True)
            if ended:
                return
            await anyio.sleep(interval)


@click.command("plan", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("command")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def plan_cmd(ctx: click.Context, command: str, args: tuple[str, ...]) -> None:
    """Print the plan of COMMAND without running it (same as COMMAND ... --dry-run)."""
    parent = ctx.parent
    assert parent is not None
    group = parent.command
    assert isinstance(group, click.Group)
    sub = group.get_command(parent, command)
    if sub is None or not any(p.name == "dry_run" for p in sub.params):
        raise click.UsageError(f"{command!r} is not a schema-change command")
    with sub.make_context(command, [*args, "--dry-run"], parent=parent) as sub_ctx:
        sub.invoke(sub_ctx)


@click.command("demo")
@click.option("--rows", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--writers", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Concurrent clients doing single-row reads and writes during the change.")
@click.option("--dsn", default=None, metavar="DSN",
              help="Use this server instead of an embedded one (creates a scratch database).")
def demo_cmd(rows: int, writers: int, dsn: str | None) -> None:
    """Start an embedded PostgreSQL, load a 1M-row table, add a column online under load."""
    from pgonline.devtools.demo import demo

    run_async(functools.partial(demo, rows=rows, writers=writers, dsn=dsn, out=click.echo))




def register(cli: click.Group) -> None:
    for cmd in (resume_cmd, rollback_cmd, status_cmd, plan_cmd, demo_cmd):
        if cmd.name not in cli.commands:
            cli.add_command(cmd)
