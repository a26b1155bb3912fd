"""The backfill engine: a batched UPDATE walking the table in key order.

Why this is safe on a live table:

* Each batch is its own short transaction under ``lock_timeout`` and
  ``statement_timeout``, so row locks are held for one batch only and a
  blocked batch gives up instead of piling up waiters.
* Batches follow the unique key (keyset pagination, never OFFSET), bounded
  above by the largest key present when the backfill started; rows inserted
  later get the column default, so the walk always ends.
* The batch UPDATE re-checks ``where_sql`` on the newest row version (the
  executor's EvalPlanQual), so a value written by the application during the
  backfill is never overwritten.
* The checkpoint (last key done) commits in the same transaction as the
  batch: after a crash the journal says exactly where to continue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import anyio
import structlog
from psycopg import sql

from pgonline.catalog.tables import estimate_rows
from pgonline.connection import Conn, SessionSettings, timeouts
from pgonline.engine import journal, tid_ranges
from pgonline.engine.journal import Checkpoint, Request, StepStatus
from pgonline.engine.plan import BackfillSpec, Step
from pgonline.engine.progress import BackfillStats, Progress
from pgonline.engine.retry import is_retryable, with_retries
from pgonline.errors import JobCancelled, JobPaused
from pgonline.safety.throttle import Throttles
from pgonline.sql.params import PARAM, with_params

log = structlog.get_logger("pgonline.engine.backfill")
# While no batch runs (throttled), `online pause/cancel/set/unthrottle` is
# read this often; a running backfill reads them with every checkpoint.
REQUEST_POLL_S = 0.5


@dataclass(frozen=True)
class BatchOptions:
    """Batch sizing and pacing.  Sizes are rows per batch; times are milliseconds."""

    # Measured on 1M rows (benchmarks/): batches of at most a few thousand rows
    # for ~100 ms keep application writes that hit a locked row waiting briefly
    # (p99 3.7 ms vs 21 ms with 20k-row batches), and at ~1.05x the time of one
    # full-table UPDATE; pacing beyond that is the throttles' and --sleep-ms's job.
    initial_size: int = 2000
    min_size: int = 50
    max_size: int = 5000
    target_ms: int = 100
    sleep_ms: int = 0
    statement_timeout_ms: int = 10_000
    max_attempts: int = 20

    def __post_init__(self) -> None:
        if not 1 <= self.min_size <= self.initial_size <= self.max_size:
            raise ValueError("batch sizes must satisfy 1 <= min <= initial <= max")


def next_batch_size(current: int, elapsed_ms: float, opts: BatchOptions) -> int:
    """Steer toward ``target_ms`` per batch.

    The proportional size is clamped to x2 / x0.5 of the current one, then
    smoothed halfway, so one step changes the size by at most x1.5 / x0.75.
    """
    if elapsed_ms <= 0:
        return min(opts.max_size, current * 2)
    ratio = max(0.5, min(2.0, opts.target_ms / elapsed_ms))
    # Smooth: move halfway toward the proportional size, so noise does not oscillate.
    proposed = current * (1 + ratio) / 2
    return int(max(opts.min_size, min(opts.max_size, proposed)))


def _keys(spec: BackfillSpec) -> list[sql.Identifier]:
    return [sql.Identifier(k) for k in spec.key_columns]


def _row(parts: list[sql.Composable]) -> sql.Composed:
    return sql.SQL("({})").format(sql.SQL(", ").join(parts))


def max_key_query(spec: BackfillSpec) -> sql.Composed:
    keys = _keys(spec)
    table = sql.Identifier(spec.schema, spec.table)
    # ORDER BY must name the table's column, not the ::text output of the same name.
    return sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT 1").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(k) for k in keys),
        table,
        sql.SQL(", ").join(sql.SQL("{}.{} DESC").format(table, k) for k in keys),
    )


def _lower_bound(spec: BackfillSpec, first: bool) -> sql.Composable:
    keys = _keys(spec)
    if first:
        return sql.SQL("")
    return sql.SQL("{} > {} AND ").format(_row(list(keys)), _row([PARAM for _ in keys]))


def bounds_query(spec: BackfillSpec, *, first: bool) -> sql.SQL:
    """The next batch's last key and row count, read from the key's index alone.

    Parameters: ``[*last_key] (unless first), *max_key, limit``.  No row comes
    back when the walk is past the end.
    """
    keys = _keys(spec)
    aliases = [sql.Identifier(f"pgonline_k{i}") for i in range(len(keys))]
    # Parameters are marked with PARAM and rendered by with_params, so a "%" in
    # an identifier stays literal.
    return with_params(sql.SQL(
        """WITH pgonline_batch AS (
    SELECT {select_keys} FROM {table}
     WHERE {lower}{keyrow} <= {upper}
     ORDER BY {order}
     LIMIT {limit}
)
SELECT {last_keys}, (SELECT count(*) FROM pgonline_batch)
  FROM pgonline_batch ORDER BY {alias_desc} LIMIT 1"""
    ).format(
        select_keys=sql.SQL(", ").join(
            sql.SQL("{} AS {}").format(k, a) for k, a in zip(keys, aliases, strict=True)
        ),
        table=sql.Identifier(spec.schema, spec.table),
        lower=_lower_bound(spec, first),
        keyrow=_row(list(keys)),
        upper=_row([PARAM for _ in keys]),
        order=sql.SQL(", ").join(keys),
        limit=PARAM,
        last_keys=sql.SQL(", ").join(sql.SQL("{}::text").format(a) for a in aliases),
        # Qualified, so ORDER BY sorts by the key itself and not by the ::text
        # output column of the same name (which would order 999 after 1750).
        alias_desc=sql.SQL(", ").join(sql.SQL("pgonline_batch.{} DESC").format(a) for a in aliases),
    ))


def update_query(spec: BackfillSpec, *, first: bool) -> sql.SQL:
    """The batch itself: a plain UPDATE over the key range the bounds query found.

    Parameters: ``[*last_key] (unless first), *batch_last_key``.  A bounded
    range on the key is an index range scan of one batch; joining the UPDATE to
    the batch's keys instead lets the planner hash-join against a sequential
    scan of the whole table, on every batch.
    """
    keys = _keys(spec)
    where_extra = sql.SQL("") if spec.where_sql is None else sql.SQL(" AND ({})").format(
        sql.SQL(spec.where_sql)
    )
    return with_params(sql.SQL("UPDATE {table} SET {set_sql} WHERE {lower}{keyrow} <= {upper}{extra}")
                       .format(table=sql.Identifier(spec.schema, spec.table),
                               set_sql=sql.SQL(spec.set_sql), lower=_lower_bound(spec, first),
                               keyrow=_row(list(keys)), upper=_row([PARAM for _ in keys]),
                               extra=where_extra))


class Backfill:
    """Runs one backfill step of one job to completion (or to a pause/cancel)."""

    def __init__(self, conn: Conn, job_id: int, step: Step, *, settings: SessionSettings,
                 opts: BatchOptions, progress: Progress, throttles: Throttles,
                 rows_updated: int = 0) -> None:
        assert step.backfill is not None
        self.conn = conn
        self.job_id = job_id
        self.step = step
        self.spec: BackfillSpec = step.backfill
        self.settings = settings
        self.opts = opts
        self.progress = progress
        self.throttles = throttles
        self.n_keys = len(self.spec.key_columns)
        # No key: batches are ranges of pages (tid_ranges.py).
        self.by_pages = self.n_keys == 0
        # The keyset queries, composed once: with and without a lower bound.
        self._queries: dict[bool, tuple[sql.SQL, sql.SQL]] = {}
        self.size = opts.initial_size
        self._last_request_poll = float("-inf")
        self._settings_rev = 0  # the revision of `online set` settings applied
        self._seen_rev_pending = False
        self._manual: str | None = None  # why `online throttle` holds the backfill, if it does
        # Rows changed by committed batches of this process, carried over by the
        # executor when it continues the step on a new connection.
        self.rows_updated = rows_updated

    async def _start(self) -> Checkpoint:
        cp = await journal.load_checkpoint(self.conn, self.job_id, self.step.id)
        if cp is not None:
            return cp
        total = await estimate_rows(self.conn, self.spec.schema, self.spec.table)
        if self.by_pages:
            pages, node = await tid_ranges.extent(self.conn, self.spec)
            cp = Checkpoint(last_key=None, max_key=[str(pages), node], rows_done=0,
                            rows_total=total, batches=0, batch_size=self.opts.initial_size,
                            finished=pages == 0)
        else:
            cur = await self.conn.execute(max_key_query(self.spec))
            row = await cur.fetchone()
            cp = Checkpoint(last_key=None, max_key=None if row is None else [str(v) for v in row],
                            rows_done=0, rows_total=total, batches=0,
                            batch_size=self.opts.initial_size, finished=row is None)
        async with self.conn.transaction():
            await journal.set_step(self.conn, self.job_id, self.step.id, StepStatus.RUNNING)
            await journal.save_checkpoint(self.conn, self.job_id, self.step.id, cp)
        return cp

    async def _wait_for_throttles(self, stats: BackfillStats) -> None:
        while True:
            await self._poll_control()
            why = self._manual or await self.throttles.first_reason(self.conn)
            if why is None:
                if stats.paused_reason:
                    log.info("throttle ended", job=self.job_id, step=self.step.id,
                             reason=stats.paused_reason)
                    stats.paused_reason = None
                    await journal.set_throttled_by(self.conn, self.job_id, None)
                    self.progress.backfill(self.step, stats, force=True)
                return
            if stats.paused_reason != why:
                # Logged and journaled when the reason changes, not on every poll.
                stats.paused_reason = why
                await journal.set_throttled_by(self.conn, self.job_id, why)
                self.progress.paused(self.step, why)
                self.progress.backfill(self.step, stats, force=True)
            await anyio.sleep(min(self.throttles.poll_s, REQUEST_POLL_S) if self._manual
                              else self.throttles.poll_s)

    async def _poll_control(self) -> None:
        # While batches run, every checkpoint brings the control row along; this
        # reads it while none do (at the start, and while throttled).
        now = time.monotonic()
        if now - self._last_request_poll < REQUEST_POLL_S:
            return
        self._last_request_poll = now
        self._obey(await journal.pending_control(self.conn, self.job_id))

    def _obey(self, control: journal.Control) -> None:
        """Honour pause/cancel; apply new `online set` settings and `online throttle`."""
        if control.request is Request.CANCEL:
            raise JobCancelled(self.job_id)
        if control.request is Request.PAUSE:
            raise JobPaused(self.job_id)
        if control.settings_rev > self._settings_rev:
            self._apply(control.settings)
            self._settings_rev = control.settings_rev
            self._seen_rev_pending = True
        if control.throttled_forever:
            self._manual = "throttled by `online throttle` (until `online unthrottle`)"
        elif control.throttled_until is not None:
            until = control.throttled_until.astimezone().strftime("%H:%M:%S")
            self._manual = f"throttled by `online throttle` (until {until})"
        else:
            self._manual = None

    def _apply(self, settings: dict[str, Any]) -> None:
        """The job's live settings (`online set`), over the options it was started with."""
        opts = self.opts
        if "batch_size" in settings:
            # A size given by hand is kept: the batch size no longer adapts.
            n = int(settings["batch_size"])
            opts = replace(opts, initial_size=n, min_size=n, max_size=n)
            self.size = n
        if "sleep_ms" in settings:
            opts = replace(opts, sleep_ms=int(settings["sleep_ms"]))
        if "target_batch_ms" in settings:
            opts = replace(opts, target_ms=int(settings["target_batch_ms"]))
        self.opts = opts
        self.throttles.apply(settings)
        log.info("settings applied", job=self.job_id, step=self.step.id, **settings)

    async def _acknowledge_settings(self) -> None:
        if self._seen_rev_pending:
            self._seen_rev_pending = False
            await journal.settings_seen(self.conn, self.job_id, self._settings_rev)

    async def _keyset_batch(self, cp: Checkpoint, rate: float | None) -> tuple[Checkpoint, int]:
        """The next keyset batch, in the caller's transaction: its checkpoint, rows changed."""
        first = cp.last_key is None
        lower: list[Any] = [] if first else list(cp.last_key or [])
        if first not in self._queries:
            self._queries[first] = (bounds_query(self.spec, first=first),
                                    update_query(self.spec, first=first))
        bounds, update = self._queries[first]
        cur = await self.conn.execute(bounds, [*lower, *(cp.max_key or []), self.size])
        row = await cur.fetchone()
        if row is None:
            return Checkpoint(cp.last_key, cp.max_key, cp.rows_done, cp.rows_total, cp.batches,
                              self.size, finished=True, rows_per_s=rate), 0
        last = [str(v) for v in row[: self.n_keys]]
        scanned = int(row[self.n_keys])
        # Same transaction: a row inserted into the range since the bounds were
        # read is updated too, which is harmless (it matches where_sql only if
        # it still needs the value).
        cur = await self.conn.execute(update, [*lower, *last])
        return Checkpoint(last, cp.max_key, cp.rows_done + scanned,
                          max(cp.rows_total, cp.rows_done + scanned), cp.batches + 1, self.size,
                          finished=scanned < self.size, rows_per_s=rate), max(cur.rowcount, 0)

    async def _page_batch(self, cp: Checkpoint, rate: float | None) -> tuple[Checkpoint, int]:
        """The next range of pages (a table without a key), in the caller's transaction."""
        assert cp.max_key is not None
        pages, node = int(cp.max_key[0]), cp.max_key[1]
        lo = int(cp.last_key[0]) if cp.last_key else 0
        hi = min(pages, lo + tid_ranges.pages_for(self.size, cp.rows_total, pages))
        cur = await self.conn.execute(tid_ranges.update_query(self.spec),
                                      [tid_ranges.tid(lo), tid_ranges.tid(hi)])
        updated = max(cur.rowcount, 0)
        done = round(hi / pages * cp.rows_total) if pages else cp.rows_total
        if hi >= pages:
            pages_now, node_now = await tid_ranges.extent(self.conn, self.spec)
            if node_now != node:
                # Rewritten since the walk began: every page was renumbered, so
                # rows may now sit on pages already walked.  Walk it all again.
                log.warning("table rewritten during the backfill (VACUUM FULL, CLUSTER, "
                            "pg_repack): walking it again", job=self.job_id, step=self.step.id)
                return Checkpoint(None, [str(pages_now), node_now], 0, cp.rows_total,
                                  cp.batches + 1, self.size, finished=False,
                                  rows_per_s=rate), updated
        return Checkpoint([str(hi)], cp.max_key, max(cp.rows_done, done),
                          max(cp.rows_total, done), cp.batches + 1, self.size,
                          finished=hi >= pages, rows_per_s=rate), updated

    async def run(self) -> None:
        cp = await self._start()
        # rows_done comes from the checkpoint, so continuing after a crash or
        # a lost connection neither restarts nor double counts it.
        stats = BackfillStats(rows_done=cp.rows_done, rows_total=max(cp.rows_total, cp.rows_done),
                              rows_updated=self.rows_updated, batch_size=cp.batch_size)
        self.size = cp.batch_size
        while not cp.finished:
            await self._wait_for_throttles(stats)
            await self._acknowledge_settings()
            assert cp.max_key is not None

            def shrink(_: BaseException) -> None:
                # A timeout or lock failure on a big batch: retry with a smaller one.
                self.size = max(self.opts.min_size, self.size // 2)

            async def one_batch(cp: Checkpoint = cp) -> tuple[Checkpoint, float, int,
                                                              journal.Control]:
                t0 = time.monotonic()
                async with self.conn.transaction():
                    # Both timeouts in one round trip: per-batch overhead is what
                    # separates a batched backfill from one big UPDATE.
                    await self.conn.execute(timeouts(self.settings.lock_timeout_ms,
                                                     self.opts.statement_timeout_ms, local=True))
                    batch = self._page_batch if self.by_pages else self._keyset_batch
                    new, updated = await batch(cp, stats.rate_last_minute)
                    if new.finished:
                        await journal.set_step(self.conn, self.job_id, self.step.id,
                                               StepStatus.DONE)
                    control = await journal.save_checkpoint(self.conn, self.job_id,
                                                            self.step.id, new)
                return new, (time.monotonic() - t0) * 1000, updated, control

            new, elapsed_ms, updated, control = await with_retries(
                f"{self.step.id} batch", one_batch, attempts=self.opts.max_attempts,
                on_retry=shrink,
            )
            stats.observe(new.rows_done - cp.rows_done, elapsed_ms / 1000 + self.opts.sleep_ms / 1000)
            stats.rows_done, stats.rows_total = new.rows_done, new.rows_total
            stats.rows_updated += updated
            self.rows_updated = stats.rows_updated
            cp = new
            self.size = next_batch_size(self.size, elapsed_ms, self.opts)
            if not cp.finished:
                # Read with the batch's checkpoint: a pause or cancel stops exactly
                # here, and new settings apply from the next batch on.
                self._obey(control)
                self._last_request_poll = time.monotonic()
            stats.batch_size = self.size
            self.progress.backfill(self.step, stats, force=cp.finished)
            if not cp.finished and self.opts.sleep_ms:
                await anyio.sleep(self.opts.sleep_ms / 1000)
        if cp.batches == 0:
            # An empty table: nothing to walk; the step is done all the same.
            async with self.conn.transaction():
                await journal.set_step(self.conn, self.job_id, self.step.id, StepStatus.DONE)


__all__ = ["Backfill", "BatchOptions", "is_retryable"]
