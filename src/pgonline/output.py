"""Plain-text tables for command output (stdout)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(out)


def _undone(r: Any) -> str:
    undone: Sequence[str] = getattr(r, "undone", ())
    return f"undone: {', '.join(undone)}" if undone else ""


def jobs_table(rows: Sequence[Any], *, detail: bool = False) -> str:
    if not rows:
        return "no jobs"
    body = []
    for r in rows:
        progress = "" if r.rows_done is None else (
            f"{r.rows_done:,}/{r.rows_total:,} ({r.percent:.1f}%)")
        body.append([r.id, r.kind, r.target, r.status, f"{r.steps_done}/{r.steps_total}",
                     r.current_step or _undone(r), progress, r.updated_at.strftime("%Y-%m-%d %H:%M:%S")])
    text = table(["job", "kind", "target", "status", "steps", "next step", "backfill", "updated"], body)
    if detail:
        r = rows[0]
        if getattr(r, "undone", ()) or getattr(r, "nothing_to_undo", ()):
            text += f"\nundone: {', '.join(r.undone) or 'nothing'}"
            if r.nothing_to_undo:
                text += f" (nothing to undo for: {', '.join(r.nothing_to_undo)})"
        if r.error:
            text += f"\nerror: {r.error}"
        if r.hint:
            text += f"\nhint: {r.hint}"
    return text
