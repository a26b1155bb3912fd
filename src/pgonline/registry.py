"""The strategy registry: every change kind, its planner and its command line.

A strategy module in ``pgonline.strategies`` decorates its planning function
with :func:`strategy`; :func:`known_strategies` discovers every module of that
package on first use, so adding a change kind never touches a central switch.

A kind that users run directly also declares its command (:class:`Command`):
the positional arguments and options, the help text and the async command
function that gathers the facts and runs the plan.  The ``online`` CLI
generates one click command per declaration (``pgonline.cli.changes``), and
``online plan``, the docs' strategy index and the other modules name a kind
through :func:`kind_of` its planner, so the kind string is written once, in
its strategy module.  The declaration is plain data: strategies stay pure and
import neither click nor the commands (the command function is named by its
import path).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pgonline.engine.plan import Plan

PlanFn = Callable[..., Plan]
F = TypeVar("F", bound=PlanFn)


@dataclass(frozen=True)
class Arg:
    """A positional argument of a change command (passed positionally, in order)."""

    name: str  # the command function's parameter
    metavar: str | None = None
    many: bool = False  # any number of values (a tuple); with ``required``, at least one
    required: bool = True


@dataclass(frozen=True)
class Opt:
    """An option of a change command (passed by keyword ``name``)."""

    flag: str  # e.g. "--on-delete"
    name: str  # the command function's keyword parameter
    help: str | None = None
    metavar: str | None = None
    is_flag: bool = False
    many: bool = False  # repeatable: a tuple of every value given
    required: bool = False
    choices: tuple[str, ...] | None = None  # matched case-insensitively
    hidden: bool = False


@dataclass(frozen=True)
class Command:
    """How users run a change kind: ``online <kind> ARGS... [OPTIONS]``."""

    run: str  # "module:function" of the async command function (ctx, *args, **options)
    help: str  # the first line is the summary in ``online --help``
    params: tuple[Arg | Opt, ...] = ()
    # For the strategy index (README): the statement it replaces, what it does
    # instead, and its page under docs/strategies/ (default: the kind).
    replaces: str = ""
    does: str = ""
    doc: str | None = None
    # Extra keyword arguments for the command function (a function serving two kinds).
    fixed: tuple[tuple[str, Any], ...] = ()


_REGISTRY: dict[str, PlanFn] = {}
_COMMANDS: dict[str, Command] = {}
_discovered = False


def strategy(name: str, *, command: Command | None = None) -> Callable[[F], F]:
    """Register ``fn`` as the planner for change kind ``name`` (e.g. ``"add-column"``).

    ``command`` makes it an ``online`` command; without one the kind is only
    planned for others (``create-index``, for ``migrate up --online``).
    """

    def register(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise RuntimeError(f"strategy {name!r} registered twice")
        _REGISTRY[name] = fn
        if command is not None:
            _COMMANDS[name] = command
        return fn

    return register


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import pgonline.strategies as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")
    _discovered = True


def known_strategies() -> dict[str, Any]:
    _discover()
    return dict(_REGISTRY)


def known_commands() -> dict[str, Command]:
    """Every change kind users run directly, with its command declaration."""
    _discover()
    return dict(_COMMANDS)


def kind_of(fn: PlanFn) -> str:
    """The change kind ``fn`` plans (its one spelling, in its strategy module)."""
    for name, registered in _REGISTRY.items():
        if registered is fn:
            return name
    raise KeyError(f"{fn!r} is not a registered strategy")
