"""The ``online`` command line: a thin click layer over typed command functions.

Every command parses its options, builds a :class:`RunContext` and calls one
async command function through a single ``anyio.run``.  Errors derived from
:class:`PgOnlineError` become one ``error:`` line (plus a ``hint:``) and the
exit code documented in :mod:`pgonline.errors`; user mistakes never print a
traceback.

Start-up stays short: this module imports click and nothing heavy.  The
commands live in the other ``pgonline.cli`` modules; the group loads the
module named like the command asked for (``lint``, ``migrate``), or all of
them when none is (the change kinds, ``--help``), and each registers its
commands itself (no central switch).  ``online --version`` loads none.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from pgonline import __version__
from pgonline.errors import PgOnlineError

if TYPE_CHECKING:
    from pgonline.engine.change import ChangeOutcome
    from pgonline.engine.executor import JobResult

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

    import asyncio
    import contextlib

    import anyio

    _configure_logs()

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


class _Online(click.Group):
    """Loads the module of a command only when that command is asked for."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is None and not _loaded:
            module = f"pgonline.cli.{cmd_name.replace('-', '_')}"
            if cmd_name.isidentifier() and cmd_name not in _NOT_COMMANDS \
                    and importlib.util.find_spec(module) is not None:
                _register(module)
                found = super().get_command(ctx, cmd_name)
            if found is None:
                _load_plugins()
                found = super().get_command(ctx, cmd_name)
        return found

    def list_commands(self, ctx: click.Context) -> list[str]:
        _load_plugins()
        return super().list_commands(ctx)


# Modules of this package that register no command of their own name.
_NOT_COMMANDS = ("main", "options", "fleet")


@click.group(cls=_Online,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--log-format", type=click.Choice(["human", "json"]), default="human",
              show_default=True, help="Logs on stderr: readable, or JSON lines.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
# The version from the package itself: importlib.metadata costs a tenth of a second.
@click.version_option(version=__version__, prog_name="online")
def cli(log_format: str, verbose: bool) -> None:
    """Zero-downtime online schema changes for PostgreSQL."""
    _log_settings[:] = ["json" if log_format == "json" else "human", verbose]
    invoked = click.get_current_context().invoked_subcommand
    if not _asks_for_help[0] and invoked not in _logs_on_demand:
        # Help output needs no logging (and not its import time).
        _configure_logs()


_log_settings: list[Any] = ["human", False]
_asks_for_help: list[bool] = [False]
# Commands that log only inside the async core: run_async configures logging
# for them, so a run that never enters it (`online lint` without --dsn) skips
# structlog's import (about 80 ms).  Their errors are printed by `_error`,
# which follows --log-format without structlog.
_logs_on_demand: set[str] = set()


def logs_on_demand(command: click.Command) -> click.Command:
    """Mark a command that logs nothing outside :func:`run_async`."""
    assert command.name is not None
    _logs_on_demand.add(command.name)
    return command


def _configure_logs() -> None:
    from pgonline.engine import logs

    logs.configure(_log_settings[0], verbose=_log_settings[1])


def _register(module: str) -> None:
    if module not in _registered:
        _registered.append(module)
        importlib.import_module(module).register(cli)


def _load_plugins() -> None:
    # Command groups living in their own ``pgonline.cli.*`` modules register
    # themselves, so features add commands without a central dispatch switch.
    import pkgutil

    import pgonline.cli

    if _loaded:
        return
    for info in pkgutil.iter_modules(pgonline.cli.__path__):
        if info.name not in _NOT_COMMANDS:
            _register(f"pgonline.cli.{info.name}")
    _loaded.append(True)


_registered: list[str] = []


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (``main`` without ``sys.exit``)."""
    args = sys.argv[1:] if argv is None else argv
    _asks_for_help[:] = [any(a in ("-h", "--help") for a in args)]
    _log_settings[:] = ["human", False]  # until the group's options say otherwise
    _signals.clear()
    try:
        cli.main(args=argv, prog_name="online", standalone_mode=False)
    except PgOnlineError as exc:
        from pgonline.redaction import redact

        code = exc.exit_code
        if code == 130 and signal.SIGTERM in _signals:
            code = 143  # 128 + SIGTERM, as a shell reports it
        return _error(redact(exc.message), code, hint=exc.hint, sqlstate=exc.sqlstate)
    except _cancelled():
        # Cancelled outside a job (while planning, or in the demo's setup).
        return _error("terminated" if signal.SIGTERM in _signals else "interrupted",
                      143 if signal.SIGTERM in _signals else 130)
    except click.exceptions.Abort:
        return _error("aborted", 130)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if _log_settings[0] != "json":
            exc.show()
            return exc.exit_code
        return _error(exc.format_message(), exc.exit_code)
    except KeyboardInterrupt:
        return _error("interrupted", 130)
    return 0


def _cancelled() -> type[BaseException]:
    """asyncio's CancelledError, once asyncio is loaded (before, nothing can raise it)."""
    asyncio = sys.modules.get("asyncio")
    return asyncio.CancelledError if asyncio is not None else _NeverRaised


class _NeverRaised(BaseException):
    pass


def _error(message: str, code: int, *, hint: str | None = None,
           sqlstate: str | None = None) -> int:
    """The one line an error gets on stderr (a JSON object with --log-format json)."""
    if _log_settings[0] == "json":
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
