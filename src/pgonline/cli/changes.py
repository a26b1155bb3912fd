"""One click command per change kind, generated from the strategy registry.

Each strategy module declares its command (:class:`pgonline.registry.Command`):
arguments, options, help, and ``parse`` from those values to a Change.  This
module turns each declaration into ``online <kind>`` with the shared
``--dsn`` and execution/safety options (:mod:`pgonline.cli.options`), so
adding a change kind adds its command without touching the CLI.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from pgonline.cli import fleet as fleet_cli
from pgonline.cli.main import report, run_async
from pgonline.cli.options import build_context, dsn_option, execution_options
from pgonline.engine.change import ChangeOutcome, RunContext, finished_before, run_change
from pgonline.engine.fleet import Outcome, Target
from pgonline.engine.progress import Progress
from pgonline.errors import CatalogError
from pgonline.registry import Arg, Command, Opt, known_commands


def register(cli: click.Group) -> None:
    for kind, declared in sorted(known_commands().items()):
        cli.add_command(build_command(kind, declared))


def build_command(kind: str, declared: Command) -> click.Command:
    """``online <kind>``: the declared parameters, then --dsn and the shared options."""

    def callback(**kw: Any) -> None:
        fleet = fleet_cli.take_fleet(kw)
        if fleet is not None:
            kw.pop("dsn")
            run_on_targets(kind, declared, fleet, kw)
            return
        ctx = build_context(kw.pop("dsn"), kw)  # takes the shared options out of kw
        positional = [kw.pop(p.name) for p in declared.params if isinstance(p, Arg)]

        async def run() -> ChangeOutcome:
            # Parsed inside the async core, whose error mapping covers usage errors.
            return await run_change(ctx, kind, declared.parse(*positional, **kw))

        report(run_async(run))

    params = [_parameter(p) for p in declared.params] + _shared_parameters(declared)
    return click.Command(kind, callback=callback, help=declared.help, params=params)


def run_on_targets(kind: str, declared: Command, fleet: fleet_cli.FleetArgs,
                   kw: dict[str, Any]) -> None:
    """``online <kind> ... --targets FILE``: the same change on every database of FILE.

    Each target gets its own RunContext (its DSN, its throttles, its
    progress, its output prefixed with the target), built here from the same
    options; the change is parsed once per target inside the async core, as
    for one database.
    """
    targets: list[Target] = fleet_cli.read(fleet)
    contexts: dict[int, RunContext] = {}
    own: dict[str, Any] = {}
    for t in targets:
        own = dict(kw)
        ctx = build_context(t.dsn, own)  # takes the shared options out of its copy
        contexts[t.line] = replace(
            ctx, out=fleet_cli.target_out(fleet, t.label),
            progress=Progress(bar=False) if fleet_cli.concurrent(fleet, len(targets))
            else ctx.progress)
    positional = [own.pop(p.name) for p in declared.params if isinstance(p, Arg)]

    async def work(t: Target) -> Outcome:
        change = declared.parse(*positional, **own)
        ctx = contexts[t.line]
        try:
            outcome = await run_change(ctx, kind, change)
        except CatalogError:
            # Planning found the change made already: by this very command
            # (an earlier run of the fleet), or by something else (a conflict).
            done = await finished_before(ctx.dsn, kind, change)
            if done is None:
                raise
            return Outcome("already done", rows=0, job_id=done.id)
        r = outcome.result
        if r is None:
            return Outcome("planned")
        shown = {"done": "done", "paused": "paused", "waiting_cutover": "waiting for cut-over"}
        result = shown.get(r.status.value, r.status.value)
        if r.resumed:
            result += " (resumed)"
        return Outcome(result, rows=r.rows, job_id=r.job_id, detail=r.next_hint)

    fleet_cli.run_fleet_command(fleet, targets, work, what="command")


def _shared_parameters(declared: Command) -> list[click.Parameter]:
    """Fresh --dsn and the execution/safety options that apply to this kind's plans."""

    def shared() -> None:  # pragma: no cover - never called, only decorated
        pass

    options = execution_options(backfill=declared.backfills, index_build=declared.builds_index,
                                contract=declared.postponable)
    decorated = dsn_option(fleet_cli.fleet_options(options(shared)))
    return list(reversed(decorated.__click_params__))  # type: ignore[attr-defined]


def _parameter(p: Arg | Opt) -> click.Parameter:
    if isinstance(p, Arg):
        return click.Argument([p.name], metavar=p.metavar, nargs=-1 if p.many else 1,
                              required=p.required)
    kind: click.ParamType[Any] | None = None
    if p.choices is not None:
        kind = click.Choice(p.choices, case_sensitive=False)
    extra: dict[str, Any] = {} if p.is_flag or p.required or p.many else {"default": None}
    return click.Option([p.flag, p.name], help=p.help, metavar=p.metavar, is_flag=p.is_flag,
                        multiple=p.many, required=p.required, type=kind, hidden=p.hidden,
                        **extra)
