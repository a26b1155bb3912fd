"""Fleet mode on the command line: ``--targets FILE`` and its options, the summary, the exit code.

``fleet_options`` adds ``--targets``, ``--concurrency``, ``--canary``,
``--stop-on-error`` and ``--format`` to a command (every schema-change
command gets them from :mod:`pgonline.cli.changes`, ``migrate up/down`` from
:mod:`pgonline.cli.migrate`); ``take_fleet`` removes their values from the
command's keyword arguments; ``run_fleet_command`` runs one async callable
per target inside the CLI's one ``anyio.run`` (the targets are tasks of one
task group, :mod:`pgonline.engine.fleet`), prints the summary and turns the
results into the exit code:

* 0: every target succeeded (done, already done, up to date, or stopped at a
  phase gate / postponed cut-over as its plan says);
* 11 (:class:`FleetFailed`): at least one target failed, or was not started
  (``--canary``, ``--stop-on-error``); each target's own exit code is in the
  summary;
* 130 / 143: interrupted (Ctrl-C / SIGTERM): every running target stopped
  resumably; running the same command again continues only those.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from pgonline.errors import FleetFailed, Interrupted, UsageError

F = TypeVar("F", bound=Callable[..., Any])

FLEET_OPTION_NAMES = ("targets", "concurrency", "canary", "stop_on_error", "fmt")


def targets_option(f: F) -> F:
    return click.option(
        "--targets", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
        metavar="FILE",
        help="Run against every database listed in FILE (one DSN or libpq service name per "
             "line, # comments) instead of --dsn; see --concurrency.")(f)


def concurrency_option(f: F) -> F:
    return click.option(
        "--concurrency", type=click.IntRange(1), default=1, show_default=True, metavar="N",
        help="With --targets: how many databases at a time.")(f)


def fleet_options(f: F) -> F:
    """--targets and the options of a fleet run (all ignored without --targets but --format)."""
    opts = [
        targets_option,
        concurrency_option,
        click.option("--canary", type=click.IntRange(0), default=0, show_default=True,
                     metavar="K",
                     help="With --targets: run the first K targets alone first; if any of "
                          "them fails, start no other."),
        click.option("--stop-on-error", is_flag=True,
                     help="With --targets: start no further target after the first failure "
                          "(default: continue; the exit code reports failures)."),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                     show_default=True,
                     help="With --targets: the summary as a table, or as JSON on stdout."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@dataclass(frozen=True)
class FleetArgs:
    path: Path
    concurrency: int = 1
    canary: int = 0
    stop_on_error: bool = False
    fmt: str = "text"


def take_fleet(kw: dict[str, Any]) -> FleetArgs | None:
    """Remove the fleet options from ``kw``; None without ``--targets``.

    ``--dsn`` given on the command line with ``--targets`` is refused (which
    one would be meant?); ``DATABASE_URL`` is simply not used then.
    """
    values = {name: kw.pop(name, None) for name in FLEET_OPTION_NAMES}
    path = values["targets"]
    if path is None:
        for name in ("canary", "stop_on_error"):
            if _given(name):
                raise UsageError(f"--{name.replace('_', '-')} needs --targets FILE")
        return None
    if _given("dsn"):
        raise UsageError("--dsn and --targets exclude each other",
                         hint="list that database in the targets file")
    return FleetArgs(path=path, concurrency=values["concurrency"] or 1,
                     canary=values["canary"] or 0, stop_on_error=bool(values["stop_on_error"]),
                     fmt=values["fmt"] or "text")


def _given(param: str) -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return False
    source = ctx.get_parameter_source(param)
    return source in (click.core.ParameterSource.COMMANDLINE,)


def read(fleet: FleetArgs) -> Any:
    """The targets of ``--targets`` (a UsageError, exit 2, for a bad line)."""
    from pgonline.engine.fleet import read_targets

    return read_targets(fleet.path)


def concurrent(fleet: FleetArgs, count: int) -> bool:
    """Whether several targets run at once (then no progress bar: it would be garbled)."""
    return fleet.concurrency > 1 and count > 1


def target_out(fleet: FleetArgs, label: str) -> Callable[[str], None]:
    """A target's own output lines, prefixed with the target; on stderr when stdout is JSON."""
    err = fleet.fmt == "json"

    def out(text: str) -> None:
        for line in text.splitlines() or [""]:
            click.echo(f"[{label}] {line}", err=err)

    return out


def run_fleet_command(fleet: FleetArgs, targets: Any,
                      work: Callable[[Any], Awaitable[Any]], *, what: str) -> None:
    """Run ``work`` per target (one anyio.run), print the summary, exit as documented above."""
    from pgonline.cli.main import run_async
    from pgonline.engine.fleet import FleetOptions, run_fleet

    opts = FleetOptions(concurrency=fleet.concurrency, canary=fleet.canary,
                        stop_on_error=fleet.stop_on_error)

    async def go() -> Any:
        run = await run_fleet(targets, work, opts)
        # Printed before the exit code is decided, so an interrupted fleet
        # still says where each target stands.
        summarize(fleet, run)
        verdict(run, what)
        return run

    run_async(go)


def summarize(fleet: FleetArgs, run: Any) -> None:
    from pgonline.output import duration, table

    if fleet.fmt == "json":
        click.echo(json.dumps({"targets": [r.to_json() for r in run.results],
                               "interrupted": run.interrupted,
                               "stopped_because": run.stopped_because,
                               "failed": len(run.failed),
                               "succeeded": sum(1 for r in run.results if r.ok)}))
        return
    rows = [[r.target, r.result, duration(r.seconds), "" if r.rows is None else f"{r.rows:,}",
             r.job_id] for r in run.results]
    click.echo(table(["target", "result", "duration", "rows", "job"], rows))
    for r in run.results:
        if r.error:
            click.echo(f"{r.target}: {r.error}")
    ok = sum(1 for r in run.results if r.ok)
    click.echo(f"{ok} of {len(run.results)} target(s) succeeded"
               + (f"; {run.stopped_because}" if run.stopped_because else ""))


def verdict(run: Any, what: str) -> None:
    """Raise the fleet's exit code (see the module docstring); return on success."""
    if run.interrupted:
        stopped = sum(1 for r in run.results if r.result == "interrupted")
        raise Interrupted(
            f"fleet interrupted: {stopped} target(s) stopped resumably, "
            f"{sum(1 for r in run.results if r.ok is None)} not started",
            hint=f"run the same {what} again: targets that finished report it, "
                 "interrupted ones continue from their journal")
    if not run.all_ok:
        failed = run.failed
        not_started = sum(1 for r in run.results if r.ok is None)
        parts = [f"{len(failed)} of {len(run.results)} target(s) failed"]
        if not_started:
            parts.append(f"{not_started} not started")
        first = failed[0] if failed else None
        raise FleetFailed(
            ", ".join(parts) + (f" (first: {first.target}, exit {first.exit_code})"
                                if first else ""),
            hint="the summary lists each target's result; fix the cause and run the same "
                 f"{what} again (finished targets are not changed twice)")
