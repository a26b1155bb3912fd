"""Every registered strategy has at least one plan snapshot."""

from __future__ import annotations

from pathlib import Path

from pgonline.registry import known_strategies

SNAPSHOTS = Path(__file__).parent / "snapshots"


def test_every_registered_strategy_has_a_plan_snapshot():
    # A snapshot's first line is "Plan: <kind> on <table>".
    kinds = {path.read_text(encoding="utf-8").split(" ", 2)[1] for path in SNAPSHOTS.glob("*.txt")}
    assert set(known_strategies()) - kinds == set()
