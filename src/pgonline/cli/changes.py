"""One click command per change kind, generated from the strategy registry.

Each strategy module declares its command (:class:`pgonline.registry.Command`):
arguments, options, help, and ``parse`` from those values to a Change.  This
module turns each declaration into ``online <kind>`` with the shared
``--dsn`` and execution/safety options (:mod:`pgonline.cli.options`), so
adding a change kind adds its command without touching the CLI.
"""

from __future__ import annotations

from typing import Any

import click

from pgonline.cli.main import report, run_async
from pgonline.cli.options import build_context, dsn_option, execution_options
from pgonline.engine.change import ChangeOutcome, run_change
from pgonline.registry import Arg, Command, Opt, known_commands


def register(cli: click.Group) -> None:
    for kind, declared in sorted(known_commands().items()):
        cli.add_command(build_command(kind, declared))


def build_command(kind: str, declared: Command) -> click.Command:
    """``online <kind>``: the declared parameters, then --dsn and the shared options."""

    def callback(**kw: Any) -> None:
        ctx = build_context(kw.pop("dsn"), kw)  # takes the shared options out of kw
        positional = [kw.pop(p.name) for p in declared.params if isinstance(p, Arg)]

        async def run() -> ChangeOutcome:
            # Parsed inside the async core, whose error mapping covers usage errors.
            return await run_change(ctx, kind, declared.parse(*positional, **kw))

        report(run_async(run))

    params = [_parameter(p) for p in declared.params] + _shared_parameters(declared)
    return click.Command(kind, callback=callback, help=declared.help, params=params)


def _shared_parameters(declared: Command) -> list[click.Parameter]:
    """Fresh --dsn and the execution/safety options that apply to this kind's plans."""

    def shared() -> None:  # pragma: no cover - never called, only decorated
        pass

    options = execution_options(backfill=declared.backfills, index_build=declared.builds_index,
                                contract=declared.postponable)
    decorated = dsn_option(options(shared))
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
