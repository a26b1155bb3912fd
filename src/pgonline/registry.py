"""The strategy registry: every change kind, its planner and its command line.

A strategy module in ``pgonline.strategies`` decorates its planning function
with :func:`strategy`; :func:`known_strategies` discovers every module of that
package on first use, so adding a change kind never touches a central switch.

A kind that users run directly also declares its command (:class:`Command`),
which holds the rest of the change kind, in the same module as its planner:

* the command line (positional arguments, options, help text) and ``parse``,
  a pure function from those values to a :class:`Change` (the table and the
  strategy's validated arguments dataclass), run before connecting;
* ``gather``, which collects the planner's facts through the catalog
  package (and ``complete`` for arguments that depend on the catalog, such
  as a foreign key's referenced primary key).

The ``online`` CLI generates one click command per declaration
(``pgonline.cli.changes``); ``migrate up --online`` recognisers build the
same :class:`Change` from a statement's parse tree; both run it through one
envelope (``pgonline.engine.change.run_change``).  ``online plan``, the
docs' strategy index and the other modules name a kind through
:func:`kind_of` its planner, so the kind string is written once, in its
strategy module.  Nothing here imports click or the engine's executor:
strategies only declare.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, Generic, TypeVar

from pgonline.engine.plan import Plan
from pgonline.sql.identifiers import QualifiedName

PlanFn = Callable[..., Plan]
F = TypeVar("F", bound=PlanFn)
A = TypeVar("A")


# Field metadata of an argument added after jobs were journaled without it.
_RECORDED_WHEN_SET = "pgonline_recorded_when_set"


def added_later(default: Any) -> Any:
    """An Args field recorded only when it differs from ``default``.

    A job is found again by its recorded arguments (their fingerprint), so a
    new option must not change the record of a command that does not use it:
    an unfinished job journaled by an earlier version is still resumed by
    re-running its command.
    """
    return field(default=default, metadata={_RECORDED_WHEN_SET: True})


def recorded_args(args: Any) -> dict[str, Any]:
    """The arguments a job records (and is fingerprinted by): ``asdict``, minus
    :func:`added_later` fields left at their default."""
    unset = {f.name for f in fields(args) if _is_unset(f, args)}
    return {k: v for k, v in asdict(args).items() if k not in unset}


def _is_unset(f: Field[Any], args: Any) -> bool:
    return bool(f.metadata.get(_RECORDED_WHEN_SET)) and getattr(args, f.name) == f.default


@dataclass(frozen=True)
class Change(Generic[A]):
    """One change as asked for, validated but not yet looked up.

    ``relation`` is what the user named (a table; an index for drop-index),
    not yet resolved against search_path.  ``args`` is the strategy's
    arguments dataclass; once completed (:attr:`Command.complete`) it is the
    job's recorded arguments, so it must stay the same for the same command
    line from one version to the next (a re-run finds its job by them).
    """

    relation: QualifiedName
    args: A


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


# async (conn, facts of the relation, args) -> the planner's facts.  The facts
# of the relation are TableFacts, or the index's name for an index change.
Gather = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Command:
    """How users run a change kind: ``online <kind> ARGS... [OPTIONS]``, and its facts."""

    help: str  # the first line is the summary in ``online --help``
    # (*positional values, **options) -> Change; pure: raises UsageError on bad input.
    parse: Callable[..., Change[Any]]
    gather: Gather
    params: tuple[Arg | Opt, ...] = ()
    # async (conn, args) -> args: arguments that depend on the catalog, settled
    # before the job is looked up by them (add-foreign-key's referenced key).
    complete: Callable[[Any, Any], Awaitable[Any]] | None = None
    # The change names an index, not a table: its job is journaled under the
    # index's table, and ``gather`` gets the index's name.
    on_index: bool = False
    # What its plans can hold, for the options its command lists: a backfill
    # (batch options and watchers), an index build (--parallel-workers), a
    # contract phase after others (--postpone-contract).
    backfills: bool = False
    builds_index: bool = False
    postponable: bool = False
    # args -> (args, note) or None: what a dry run plans instead, and why
    # (drop-column without --confirm shows what --confirm would run).
    preview: Callable[[Any], tuple[Any, str] | None] | None = None
    # For the strategy index (README): the statement it replaces, what it does
    # instead, and its page under docs/strategies/ (default: the kind).
    replaces: str = ""
    does: str = ""
    doc: str | None = None


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


def planner(kind: str) -> PlanFn:
    """The planning function of change kind ``kind``."""
    _discover()
    return _REGISTRY[kind]


def command(kind: str) -> Command:
    """The command declaration of change kind ``kind`` (KeyError for a planner-only kind)."""
    _discover()
    return _COMMANDS[kind]


def kind_of(fn: PlanFn) -> str:
    """The change kind ``fn`` plans (its one spelling, in its strategy module)."""
    for name, registered in _REGISTRY.items():
        if registered is fn:
            return name
    raise KeyError(f"{fn!r} is not a registered strategy")
