"""The strategy registry.

A strategy module in ``pgonline.strategies`` decorates its planning function
with :func:`strategy`; :func:`known_strategies` discovers every module of that
package on first use, so adding a change kind never touches a central switch.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from pgonline.engine.plan import Plan

PlanFn = Callable[..., Plan]
F = TypeVar("F", bound=PlanFn)

_REGISTRY: dict[str, PlanFn] = {}
_discovered = False


def strategy(name: str) -> Callable[[F], F]:
    """Register ``fn`` as the planner for change kind ``name`` (e.g. ``"add-column"``)."""

    def register(fn: F) -> F:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise RuntimeError(f"strategy {name!r} registered twice")
        _REGISTRY[name] = fn
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
