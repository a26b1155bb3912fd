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
    """``online jobs`` / ``online status``: one line per job, or one job in detail."""
    if not rows:
        return "no jobs"
    if detail:
        return job_detail(rows[0])
    body = []
    for r in rows:
        body.append([r.id, r.kind, r.target, _shown_state(r), f"{r.steps_done}/{r.steps_total}",
                     r.current_step or _undone(r), _backfill(r), _rate(r.rows_per_s),
                     duration(r.eta_s), r.updated_at.strftime("%Y-%m-%d %H:%M:%S")])
    text = table(["job", "kind", "target", "status", "steps", "next step", "backfill", "rate",
                  "eta", "updated"], body)
    for r in rows:
        if r.status == "cancelled" and r.next_command:
            text += (f"\njob {r.id} was cancelled with completed steps left in place: "
                     f"`{r.next_command}` undoes them")
        elif r.status == "failed" and r.next_command:
            text += f"\njob {r.id} failed ({r.error or 'see online status'}): {r.next_command}"
    return text


def fleet_jobs_table(per_target: Sequence[tuple[str, Sequence[Any], str | None]]) -> str:
    """``online status --targets``: every target's jobs, one line each, led by the target."""
    body: list[list[Any]] = []
    for target, rows, error in per_target:
        if error is not None:
            body.append([target, "", "", "", f"error: {error}", "", "", "", "", ""])
        elif not rows:
            body.append([target, "", "", "", "no jobs", "", "", "", "", ""])
        for r in rows:
            body.append([target, r.id, r.kind, r.target, _shown_state(r),
                         f"{r.steps_done}/{r.steps_total}", _backfill(r), _rate(r.rows_per_s),
                         duration(r.eta_s), r.updated_at.strftime("%Y-%m-%d %H:%M:%S")])
    return table(["database", "job", "kind", "target", "status", "steps", "backfill", "rate",
                  "eta", "updated"], body)


def job_detail(r: Any) -> str:
    """Everything ``online status JOB`` knows about one job."""
    where = f"phase {r.phase}, step {r.current_step}" if r.current_step else ""
    lines = [f"job {r.id}: {r.kind} on {r.target}",
             f"state:    {_shown_state(r)}" + (f" ({where})" if where else "")]
    if r.rows_done is not None:
        parts = [_backfill(r) + " rows"]
        if r.rows_per_s is not None:
            parts.append(_rate(r.rows_per_s))
        if r.eta_s is not None:
            parts.append(f"ETA {duration(r.eta_s)}")
        if r.batch_size:
            parts.append(f"batch {r.batch_size:,}")
        lines.append("backfill: " + ", ".join(parts))
    if r.throttled_by:
        lines.append(f"throttled by: {r.throttled_by}")
    if r.runner_pid is not None:
        lines.append(f"runner:   pid {r.runner_pid} on {r.runner_host or '?'}"
                     + ("" if r.state in ("running", "throttled") else " (last run)"))
    if r.settings:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(r.settings.items()))
        lines.append(f"settings: {shown} (`online set`)")
    lines.append(f"updated:  {r.updated_at.strftime('%Y-%m-%d %H:%M:%S')}")
    steps = [[s.id, s.phase, s.status, _clock(s.started_at), _clock(s.finished_at)]
             for s in r.steps]
    lines += ["", table(["step", "phase", "status", "started", "finished"], steps)]
    if getattr(r, "undone", ()) or getattr(r, "nothing_to_undo", ()):
        text = f"undone: {', '.join(r.undone) or 'nothing'}"
        if r.nothing_to_undo:
            text += f" (nothing to undo for: {', '.join(r.nothing_to_undo)})"
        lines.append(text)
    if r.error:
        lines.append(f"error: {r.error}")
    if r.hint:
        lines.append(f"hint: {r.hint}")
    if r.next_command:
        lines.append(f"next: {r.next_command}")
    return "\n".join(lines)


def _shown_state(r: Any) -> str:
    return str(r.status) if "runner gone" in str(r.status) else str(r.state or r.status)


def _backfill(r: Any) -> str:
    if r.rows_done is None:
        return ""
    return f"{r.rows_done:,}/{r.rows_total:,} ({r.percent:.1f}%)"


def _rate(rows_per_s: float | None) -> str:
    return "" if rows_per_s is None else f"{rows_per_s:,.0f} rows/s"


def _clock(t: Any) -> str:
    return "" if t is None else str(t.strftime("%H:%M:%S"))


def duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` / ``5s``; empty when unknown."""
    if seconds is None:
        return ""
    total = round(seconds)
    h, rest = divmod(total, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}:{m:02d}:{sec:02d}"
    return f"{m}:{sec:02d}" if m else f"{sec}s"
