"""Progress reporting: rows done / estimated total, %, rows/s and ETA.

One :class:`Progress` object receives events from the executor and the
backfill engine.  On a terminal in human mode it draws a rich progress bar;
otherwise it emits structlog events (JSON lines with ``--log-format json``),
rate-limited so a fast backfill does not flood the log.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import structlog
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as RichProgress,
)

from pgonline.engine import logs
from pgonline.engine.plan import Step

log = structlog.get_logger("pgonline")
RATE_WINDOW_S = 60.0


@dataclass
class BackfillStats:
    """Live numbers for one backfill step; ``rate`` is smoothed rows per second.

    With several workers (``--workers``) each one is a *lane*: its rate is
    smoothed on its own, and the step's rate is their sum.
    """

    rows_done: int
    rows_total: int
    rows_updated: int = 0
    batch_size: int = 0
    started: float = field(default_factory=time.monotonic)
    paused_reason: str | None = None
    # Batches committed by this process, and the time their checkpoint upserts
    # took: what keeping the walk resumable costs, reported with the progress.
    batches: int = 0
    checkpoint_s: float = 0.0
    # (monotonic time, rows done) after each batch of the last RATE_WINDOW_S.
    _window: deque[tuple[float, int]] = field(default_factory=deque, repr=False)
    _lanes: dict[int, float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._window.append((self.started, self.rows_done))

    @property
    def rate(self) -> float:
        return sum(self._lanes.values())

    @property
    def percent(self) -> float:
        if self.rows_total <= 0:
            return 100.0
        return min(100.0, 100.0 * self.rows_done / self.rows_total)

    @property
    def eta_s(self) -> float | None:
        if self.rate <= 0:
            return None
        return max(0.0, (self.rows_total - self.rows_done) / self.rate)

    def observe(self, rows: int, seconds: float, *, lane: int = 0) -> None:
        """Fold one batch into the smoothed rate (EWMA, so one slow batch does not swing ETA).

        Called before ``rows_done`` counts the batch's ``rows``: the window
        keeps the step's total, whichever lane did them.
        """
        now = time.monotonic()
        self._window.append((now, self.rows_done + rows))
        while len(self._window) > 2 and now - self._window[1][0] >= RATE_WINDOW_S:
            self._window.popleft()
        if seconds <= 0:
            return
        inst = rows / seconds
        old = self._lanes.get(lane, 0.0)
        self._lanes[lane] = inst if old == 0 else 0.7 * old + 0.3 * inst

    def lane_done(self, lane: int) -> None:
        """A worker ran out of parts: its rate no longer adds to the step's."""
        self._lanes.pop(lane, None)

    @property
    def rate_last_minute(self) -> float | None:
        """Rows per second over the last minute, waits for throttles included (None: too early)."""
        if len(self._window) < 2:
            return None
        (t0, r0), (t1, r1) = self._window[0], self._window[-1]
        return (r1 - r0) / (t1 - t0) if t1 > t0 else None

    def fields(self) -> dict[str, Any]:
        eta = self.eta_s
        return {
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_updated": self.rows_updated,
            "percent": round(self.percent, 1),
            "rows_per_s": round(self.rate, 1),
            "eta_s": None if eta is None else round(eta, 1),
            "batch_size": self.batch_size,
            "batches": self.batches,
            "checkpoint_ms_per_batch": (round(1000 * self.checkpoint_s / self.batches, 3)
                                        if self.batches else None),
        }


class Progress:
    """Receives job events; renders them as a bar (TTY) or as log lines."""

    def __init__(self, *, bar: bool | None = None, log_every_s: float = 2.0) -> None:
        # A bar on a terminal, unless the logs are JSON lines (every stderr line one object).
        self.bar = (sys.stderr.isatty() and logs.current_format() == "human") if bar is None \
            else bar
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self._rich: RichProgress | None = None
        self._task: TaskID | None = None

    def job(self, job_id: int, kind: str, target: str, resumed: bool) -> None:
        log.info("job resumed" if resumed else "job started", job=job_id, kind=kind, target=target)

    def step_started(self, index: int, count: int, step: Step) -> None:
        # count 0: a step of a rollback, which undoes steps out of plan order.
        position = {"n": f"{index}/{count}"} if count else {}
        log.info("step started", step=step.id, **position, phase=str(step.phase),
                 lock=str(step.lock))

    def step_skipped(self, step: Step, why: str) -> None:
        log.info("step skipped", step=step.id, reason=why)

    def step_finished(self, step: Step, seconds: float) -> None:
        self._close_bar()
        log.info("step done", step=step.id, seconds=round(seconds, 3))

    def backfill(self, step: Step, stats: BackfillStats, *, force: bool = False) -> None:
        if self.bar:
            if self._rich is None:
                # Fits 80 columns: the bar takes what the numbers leave, and a
                # throttle shows as one word here, its reason on a line of its own
                # (the "throttled" log line, printed above the bar).
                self._rich = RichProgress(
                    TextColumn("[bold]{task.description}"), BarColumn(bar_width=None),
                    MofNCompleteColumn(), TextColumn("{task.percentage:>5.1f}%"),
                    TextColumn("{task.fields[rate]}"), TextColumn("ETA"), TimeRemainingColumn(),
                    TextColumn("{task.fields[note]}"),
                    console=Console(file=sys.stderr), transient=False,
                )
                self._rich.start()
                self._task = self._rich.add_task(step.id, total=stats.rows_total, rate="", note="")
            assert self._task is not None
            self._rich.update(
                self._task, completed=stats.rows_done, total=max(stats.rows_total, stats.rows_done),
                rate=f"{stats.rate:,.0f} rows/s",
                note="[yellow]throttled" if stats.paused_reason else "",
            )
            return
        now = time.monotonic()
        if force or now - self._last_log >= self.log_every_s:
            self._last_log = now
            log.info("backfill progress", step=step.id, paused=stats.paused_reason, **stats.fields())

    def paused(self, step: Step, reason: str) -> None:
        log.info("throttled", step=step.id, reason=reason)

    def _close_bar(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None
            self._task = None

    def close(self) -> None:
        self._close_bar()
