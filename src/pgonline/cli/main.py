"""The ``online`` command line: a thin click layer over typed command functions.

Every command parses its options, builds a :class:`RunContext` and calls one
async command function through a single ``anyio.run``.  Errors derived from
:class:`PgOnlineError` become one ``error:`` line (plus a ``hint:``) and the
exit code documented in :mod:`pgonline.errors`; user mistakes never print a
traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click

from pgonline.cli.options import build_context, dsn_option, exec_options, execution_options
from pgonline.connection import redact, resolve_dsn
from pgonline.engine import logs
from pgonline.engine.change import ChangeOutcome
from pgonline.engine.executor import JobResult
from pgonline.errors import PgOnlineError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


# Signals that stopped the command (SIGTERM makes the exit code 143 instead of 130).
_signals: list[int] = []


def run_async(fn: Callable[[], Awaitable[T]]) -> T:
    """The one place where the async core is entered.

    Ctrl-C (SIGINT) and SIGTERM cancel the command's task; a running job
    sees the cancellation between statements, records itself as interrupted
    and raises :class:`Interrupted`, which ``run`` prints as one line.  An
    error raised inside a task group arrives wrapped in an ExceptionGroup:
    the first of our errors in it is raised instead, never the group.
    """

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            _signals.append(signum)
            task.cancel()

        for signum in (signal.SIGTERM,):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signum, stop, signum)
        try:
            return await fn()
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    try:
        return anyio.run(guarded)
    except BaseExceptionGroup as group:
        raise _first_of_ours(group) from None


def _first_of_ours(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        inner = _first_of_ours(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(inner, PgOnlineError | KeyboardInterrupt):
            return inner
    return group


def report(outcome: ChangeOutcome) -> None:
    if outcome.result is not None:
        report_job(outcome.result)


def report_job(r: JobResult) -> None:
    ended = {"paused": "paused", "waiting_cutover": "is waiting for cut-over"}
    verb = ("resumed and " if r.resumed else "") + ended.get(r.status.value, "finished")
    click.echo(f"job {r.job_id} {verb} in {r.seconds:.2f}s ({len(r.steps_run)} steps run)")
    if r.next_hint:
        click.echo(r.next_hint)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-format", type=click.Choice(["human", "json"]), default="human",
              show_default=True, help="Logs on stderr: readable, or JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.version_option(package_name="pgonline")
def cli(log_format: str, verbose: bool) -> None:
    """Zero-downtime online schema changes for PostgreSQL."""
    logs.configure("json" if log_format == "json" else "human", verbose=verbose)


@cli.command("resume")
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


@cli.command("rollback")
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


@cli.command("status")
@click.argument("job_id", type=int, required=False)
@click.option("--active", is_flag=True, help="Only jobs that are not finished.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Human-readable, or JSON (an object for JOB_ID, else a list).")
@click.option("--watch", is_flag=True, help="Refresh in place until the job ends (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(0.1), default=2.0, show_default=True,
              metavar="SECONDS", help="How often --watch refreshes.")
@dsn_option
def status_cmd(job_id: int | None, active: bool, fmt: str, watch: bool, interval: float,
               dsn: str | None) -> None:
    """List jobs with their progress, or JOB_ID in detail: steps, rate, ETA, runner."""
    from pgonline.engine.jobs import status
    from pgonline.output import jobs_table

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


@cli.command("plan", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("command")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def plan_cmd(ctx: click.Context, command: str, args: tuple[str, ...]) -> None:
    """Print the plan of COMMAND without running it (same as COMMAND ... --dry-run)."""
    parent = ctx.parent
    assert parent is not None
    sub = cli.get_command(parent, command)
    if sub is None or not any(p.name == "dry_run" for p in sub.params):
        raise click.UsageError(f"{command!r} is not a schema-change command")
    with sub.make_context(command, [*args, "--dry-run"], parent=parent) as sub_ctx:
        sub.invoke(sub_ctx)


@cli.command("demo")
@click.option("--rows", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--writers", type=click.IntRange(0, 64), default=4, show_default=True,
              help="Concurrent clients doing single-row reads and writes during the change.")
@click.option("--dsn", default=None, metavar="DSN",
              help="Use this server instead of an embedded one (creates a scratch database).")
def demo_cmd(rows: int, writers: int, dsn: str | None) -> None:
    """Start an embedded PostgreSQL, load a 1M-row table, add a column online under load."""
    from pgonline.devtools.demo import demo

    run_async(functools.partial(demo, rows=rows, writers=writers, dsn=dsn, out=click.echo))


def _load_plugins() -> None:
    # Command groups living in their own ``pgonline.cli.*`` modules register
    # themselves, so features add commands without a central dispatch switch.
    import importlib
    import pkgutil

    import pgonline.cli

    for info in pkgutil.iter_modules(pgonline.cli.__path__):
        if info.name not in ("main", "options"):
            module = importlib.import_module(f"pgonline.cli.{info.name}")
            module.register(cli)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (``main`` without ``sys.exit``)."""
    if not _loaded:
        _load_plugins()
        _loaded.append(True)
    _signals.clear()
    try:
        cli.main(args=argv, prog_name="online", standalone_mode=False)
    except PgOnlineError as exc:
        code = exc.exit_code
        if code == 130 and signal.SIGTERM in _signals:
            code = 143  # 128 + SIGTERM, as a shell reports it
        return _error(redact(exc.message), code, hint=exc.hint, sqlstate=exc.sqlstate)
    except asyncio.CancelledError:
        # Cancelled outside a job (while planning, or in the demo's setup).
        return _error("terminated" if signal.SIGTERM in _signals else "interrupted",
                      143 if signal.SIGTERM in _signals else 130)
    except click.exceptions.Abort:
        return _error("aborted", 130)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if logs.current_format() != "json":
            exc.show()
            return exc.exit_code
        return _error(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    return 0


def _error(message: str, code: int, *, hint: str | None = None,
           sqlstate: str | None = None) -> int:
    """The one line an error gets on stderr (a JSON object with --log-format json)."""
    if logs.current_format() == "json":
        fields = {"hint": hint, "sqlstate": sqlstate}
        click.echo(json.dumps({"event": "error", "level": "error", "error": message,
                               "exit_code": code, **{k: v for k, v in fields.items() if v}}),
                   err=True)
        return code
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    return code


_loaded: list[bool] = []


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))
