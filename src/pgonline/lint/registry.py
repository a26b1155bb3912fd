"""The rule registry: each rule is a small function with a code, a severity and a help line.

A rule receives one parsed statement whose node type it declared, plus the
:class:`~pgonline.lint.state.LintContext` (what earlier statements did and
what the catalog says), and yields :class:`Hit` objects.  Rules never do I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pgonline.lint.findings import Severity

if TYPE_CHECKING:
    from pgonline.lint.state import LintContext


@dataclass(frozen=True)
class Hit:
    message: str
    node: Any = None  # a pglast node with a location to point at; default: the statement
    help: str | None = None
    severity: Severity | None = None


Check = Callable[[Any, "LintContext"], Iterator[Hit]]


@dataclass(frozen=True)
class Rule:
    code: str
    severity: Severity
    summary: str
    help: str
    nodes: tuple[type, ...]
    check: Check | None


RULES: dict[str, Rule] = {}


def rule(code: str, severity: Severity, *, summary: str, help: str,
         nodes: tuple[type, ...]) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        if code in RULES:
            raise RuntimeError(f"lint rule {code!r} registered twice")
        RULES[code] = Rule(code, severity, summary, help, nodes, fn)
        return fn
    return register


def declare(code: str, severity: Severity, *, summary: str, help: str) -> Rule:
    """A code reported by the engine itself (syntax errors, bad suppressions)."""
    entry = Rule(code, severity, summary, help, (), None)
    RULES[code] = entry
    return entry


def all_rules() -> dict[str, Rule]:
    # Importing the rule modules registers them.
    import pgonline.lint.rules_columns
    import pgonline.lint.rules_constraints
    import pgonline.lint.rules_dml
    import pgonline.lint.rules_idempotency
    import pgonline.lint.rules_index
    import pgonline.lint.rules_session
    import pgonline.lint.rules_tables  # noqa: F401
    return RULES
