"""Plan snapshots: each test builds a plan from hand-written facts (no server) and
compares its rendering with ``snapshots/<case>.txt``.

``PGONLINE_UPDATE_SNAPSHOTS=1 pytest tests/plans`` rewrites the files that differ
(or are missing) instead of failing; the run's summary lists them.  Review the
diff before committing it: the snapshots are the specification of the plans.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pgonline.engine.plan import Plan

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_VARIABLE = "PGONLINE_UPDATE_SNAPSHOTS"
_updated: list[str] = []
_used: set[str] = set()


@pytest.fixture(scope="session")
def pg_server() -> None:
    """Shadows tests/conftest.py's server: a plan test asking for a database fails at once."""
    pytest.fail("tests/plans must not use a server (dsn, db, pg_server, online fixtures)")


def render(plan: Plan) -> str:
    """``plan.to_text()`` as the dry-run prints it, then what it leaves out: each step's undo,
    done_if and cleanup, so that a missing undo shows in the snapshot too."""
    lines = [plan.to_text(), "", "--- not in to_text: undo, done_if, cleanup ---"]
    for i, s in enumerate(plan.steps, 1):
        lines.append(f"{i}. {s.id}")
        for label, text in (("undo", s.undo_sql), ("done if", s.done_if),
                            ("cleanup if", s.cleanup_if), ("cleanup", s.cleanup_sql),
                            ("undo cleanup if", s.undo_cleanup_if),
                            ("undo cleanup", s.undo_cleanup_sql)):
            if text is not None or label == "undo":
                lines.append(f"   {label}: " + ("(none)" if text is None else
                                               text.replace("\n", "\n" + " " * (len(label) + 5))))
    return "\n".join(lines) + "\n"


@pytest.fixture
def snapshot() -> Callable[[str, Plan], None]:
    """``snapshot(case, plan)``: the plan's rendering equals ``snapshots/<case>.txt``."""

    def check(case: str, plan: Plan) -> None:
        assert case not in _used, f"snapshot {case!r} is used by two tests"
        _used.add(case)
        path = SNAPSHOTS / f"{case}.txt"
        actual = render(plan)
        expected = path.read_text(encoding="utf-8") if path.exists() else None
        if os.environ.get(UPDATE_VARIABLE) == "1":
            if actual != expected:
                path.write_text(actual, encoding="utf-8")
                _updated.append(path.name)
            return
        if expected is None:
            pytest.fail(f"no snapshot tests/plans/snapshots/{case}.txt; create it with "
                        f"`{UPDATE_VARIABLE}=1 pytest tests/plans`, then review it", pytrace=False)
        assert actual == expected, (f"plan differs from snapshots/{case}.txt; if the change is "
                                    f"intended, rerun with {UPDATE_VARIABLE}=1 and review the diff")

    return check


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _updated:
        terminalreporter.write_sep("=", f"{len(_updated)} plan snapshot(s) written")
        for name in _updated:
            terminalreporter.write_line(f"  tests/plans/snapshots/{name}")
    unused = sorted(p.name for p in SNAPSHOTS.glob("*.txt") if p.stem not in _used)
    if os.environ.get(UPDATE_VARIABLE) == "1" and _used and unused:
        terminalreporter.write_sep("=", "plan snapshots no test of this run used (stale?)")
        for name in unused:
            terminalreporter.write_line(f"  tests/plans/snapshots/{name}")
