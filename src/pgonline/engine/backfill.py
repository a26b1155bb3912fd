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
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from typing import Any

import anyio
import structlog
from psycopg import sql

from pgonline.catalog.tables import estimate_rows
from pgonline.connection import Conn, SessionSettings, connect, session_setup, timeouts
from pgonline.engine import journal, key_ranges, tid_ranges
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


def sample_query(spec: BackfillSpec, *, first: bool) -> sql.SQL:
    """Keys of a sample of pages within the range still to walk, in key order.

    Parameters: ``percent, [*last_key] (unless first), *max_key``.  It reads
    the sampled pages only (``TABLESAMPLE SYSTEM``), whatever the table's size.
    """
    keys = _keys(spec)
    table = sql.Identifier(spec.schema, spec.table)
    return with_params(sql.SQL(
        "SELECT {text} FROM {table} TABLESAMPLE SYSTEM ({pct}) WHERE {lower}{keyrow} <= {upper} "
        "ORDER BY {order}"
    ).format(text=sql.SQL(", ").join(sql.SQL("{}::text").format(k) for k in keys), table=table,
             pct=PARAM, lower=_lower_bound(spec, first), keyrow=_row(list(keys)),
             upper=_row([PARAM for _ in keys]),
             order=sql.SQL(", ").join(sql.SQL("{}.{}").format(table, k) for k in keys)))


# The connection slots a backfill's extra workers must leave to the
# application: an application that cannot connect is an application broken.
SPARE_CONNECTIONS_MIN = 5
SPARE_CONNECTIONS_SHARE = 0.1
_FREE_SLOTS = """
SELECT current_setting('max_connections')::int
       - current_setting('superuser_reserved_connections')::int
       - coalesce(current_setting('reserved_connections', true)::int, 0)
       - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'),
       current_setting('max_connections')::int
"""


class _Stop(Exception):
    """Another worker stopped the backfill (an error, a pause, a cancel): this one ends too."""


class Backfill:
    """Runs one backfill step of one job to completion (or to a pause/cancel).

    With ``workers`` > 1 the range is split into parts (:mod:`key_ranges`),
    walked at once, each on its own connection; the throttles, the live
    control (pause, cancel, `online set`, `online throttle`) and the progress
    are shared by all of them.  ``conn`` (the job's session, which holds its
    lock) walks one part itself.
    """

    def __init__(self, conn: Conn, job_id: int, step: Step, *, settings: SessionSettings,
                 opts: BatchOptions, progress: Progress, throttles: Throttles,
                 rows_updated: int = 0, workers: int = 1, dsn: str | None = None) -> None:
        assert step.backfill is not None
        assert workers == 1 or dsn is not None, "extra workers need the DSN to connect"
        self.conn = conn
        self.job_id = job_id
        self.step = step
        self.spec: BackfillSpec = step.backfill
        self.settings = settings
        self.opts = opts
        self.progress = progress
        self.throttles = throttles
        self.workers = workers
        self.dsn = dsn
        self.n_keys = len(self.spec.key_columns)
        # No key: batches are ranges of pages (tid_ranges.py).
        self.by_pages = self.n_keys == 0
        # The keyset queries, composed once: with and without a lower bound.
        self._queries: dict[bool, tuple[sql.SQL, sql.SQL]] = {}
        self._last_request_poll = float("-inf")
        self._settings_rev = 0  # the revision of `online set` settings applied
        self._seen_rev_pending = False
        self._manual: str | None = None  # why `online throttle` holds the backfill, if it does
        # One worker at a time asks the throttles (some keep a side connection)
        # and waits while they object; the others queue behind it.
        self._throttle_gate = anyio.Lock()
        # The first error of any worker; the others end after their batch.
        self._failure: BaseException | None = None
        # Rows changed by committed batches of this process, carried over by the
        # executor when it continues the step on a new connection.
        self.rows_updated = rows_updated
        self._stats: BackfillStats | None = None
        self._totals: dict[int, tuple[int, int]] = {}  # part -> (rows done, rows total)

    # -- the range and its parts ------------------------------------------------

    async def _whole(self) -> Checkpoint:
        """The checkpoint of a walk not started yet: the whole range, as of now."""
        total = await estimate_rows(self.conn, self.spec.schema, self.spec.table)
        if self.by_pages:
            pages, node = await tid_ranges.extent(self.conn, self.spec)
            return Checkpoint(last_key=None, max_key=[str(pages), node], rows_done=0,
                              rows_total=total, batches=0, batch_size=self.opts.initial_size,
                              finished=pages == 0)
        cur = await self.conn.execute(max_key_query(self.spec))
        row = await cur.fetchone()
        return Checkpoint(last_key=None, max_key=None if row is None else [str(v) for v in row],
                          rows_done=0, rows_total=total, batches=0,
                          batch_size=self.opts.initial_size, finished=row is None)

    async def _split(self, cp: Checkpoint) -> list[Checkpoint]:
        if cp.finished or self.workers == 1:
            return [cp]
        if self.by_pages:
            return key_ranges.split_pages(cp, self.workers)
        pages, _ = await tid_ranges.extent(self.conn, self.spec)
        first = cp.last_key is None
        cur = await self.conn.execute(
            sample_query(self.spec, first=first),
            [key_ranges.sample_percent(pages, self.workers), *(cp.last_key or []),
             *(cp.max_key or [])])
        sample = [[str(v) for v in row] for row in await cur.fetchall()]
        return key_ranges.split_keyset(cp, self.workers, sample)

    async def _start(self) -> list[Checkpoint]:
        parts = await journal.load_parts(self.conn, self.job_id, self.step.id)
        if len(parts) > 1:
            return parts  # split by an earlier run: each part continues where it stopped
        whole = parts[0] if parts else await self._whole()
        split = await self._split(whole)
        if parts and len(split) == 1:
            return parts
        async with self.conn.transaction():
            if not parts:
                await journal.set_step(self.conn, self.job_id, self.step.id, StepStatus.RUNNING)
            await journal.replace_parts(self.conn, self.job_id, self.step.id, split)
        if len(split) > 1:
            log.info("backfill split", job=self.job_id, step=self.step.id, parts=len(split),
                     resumed=bool(parts))
        return split

    async def _rewritten(self, parts: list[Checkpoint]) -> list[Checkpoint] | None:
        """After a page walk: new parts if the table was rewritten meanwhile, else None."""
        if not self.by_pages or not parts:
            return None
        _, _, node = key_ranges.page_extent(parts[0])
        pages_now, node_now = await tid_ranges.extent(self.conn, self.spec)
        if node_now == node:
            return None
        # Rewritten since the walk began (VACUUM FULL, CLUSTER, pg_repack): every
        # page was renumbered, so rows may now sit on pages already walked.  Walk
        # it all again (harmless: only idempotent fills walk pages).
        log.warning("table rewritten during the backfill (VACUUM FULL, CLUSTER, pg_repack): "
                    "walking it again", job=self.job_id, step=self.step.id)
        total = sum(max(p.rows_total, p.rows_done) for p in parts)
        whole = Checkpoint(None, [str(pages_now), node_now], 0, total,
                           sum(p.batches for p in parts), self.opts.initial_size,
                           finished=pages_now == 0)
        split = await self._split(whole)
        async with self.conn.transaction():
            await journal.replace_parts(self.conn, self.job_id, self.step.id, split)
        return split

    # -- throttles and live control, shared by every worker ---------------------

    async def _wait_for_throttles(self, conn: Conn, stats: BackfillStats) -> None:
        async with self._throttle_gate:
            while True:
                self._check_stop()
                await self._poll_control(conn)
                why = self._manual or await self.throttles.first_reason(conn)
                if why is None:
                    if stats.paused_reason:
                        log.info("throttle ended", job=self.job_id, step=self.step.id,
                                 reason=stats.paused_reason)
                        stats.paused_reason = None
                        await journal.set_throttled_by(conn, self.job_id, None)
                        self.progress.backfill(self.step, stats, force=True)
                    return
                if stats.paused_reason != why:
                    # Logged and journaled when the reason changes, not on every poll.
                    stats.paused_reason = why
                    await journal.set_throttled_by(conn, self.job_id, why)
                    self.progress.paused(self.step, why)
                    self.progress.backfill(self.step, stats, force=True)
                await anyio.sleep(min(self.throttles.poll_s, REQUEST_POLL_S) if self._manual
                                  else self.throttles.poll_s)

    def _check_stop(self) -> None:
        if self._failure is not None:
            raise _Stop

    async def _poll_control(self, conn: Conn) -> None:
        # While batches run, every checkpoint brings the control row along; this
        # reads it while none do (at the start, and while throttled).
        now = time.monotonic()
        if now - self._last_request_poll < REQUEST_POLL_S:
            return
        self._last_request_poll = now
        self._obey(await journal.pending_control(conn, self.job_id))

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
            # A size given by hand is kept: the batch size no longer adapts
            # (every worker clamps its size to min..max before each batch).
            n = int(settings["batch_size"])
            opts = replace(opts, initial_size=n, min_size=n, max_size=n)
        if "sleep_ms" in settings:
            opts = replace(opts, sleep_ms=int(settings["sleep_ms"]))
        if "target_batch_ms" in settings:
            opts = replace(opts, target_ms=int(settings["target_batch_ms"]))
        self.opts = opts
        self.throttles.apply(settings)
        log.info("settings applied", job=self.job_id, step=self.step.id, **settings)

    async def _acknowledge_settings(self, conn: Conn) -> None:
        if self._seen_rev_pending:
            self._seen_rev_pending = False
            await journal.settings_seen(conn, self.job_id, self._settings_rev)

    # -- batches ----------------------------------------------------------------

    async def _keyset_batch(self, conn: Conn, cp: Checkpoint, size: int,
                            rate: float | None) -> tuple[Checkpoint, int]:
        """The next keyset batch, in the caller's transaction: its checkpoint, rows changed."""
        first = cp.last_key is None
        lower: list[Any] = [] if first else list(cp.last_key or [])
        if first not in self._queries:
            self._queries[first] = (bounds_query(self.spec, first=first),
                                    update_query(self.spec, first=first))
        bounds, update = self._queries[first]
        cur = await conn.execute(bounds, [*lower, *(cp.max_key or []), size])
        row = await cur.fetchone()
        if row is None:
            # A part that ends knows its rows exactly: no estimate is left in its total.
            return replace(cp, rows_total=cp.rows_done, batch_size=size, finished=True,
                           rows_per_s=rate), 0
        last = [str(v) for v in row[: self.n_keys]]
        scanned = int(row[self.n_keys])
        # Same transaction: a row inserted into the range since the bounds were
        # read is updated too, which is harmless (it matches where_sql only if
        # it still needs the value).
        cur = await conn.execute(update, [*lower, *last])
        done = cp.rows_done + scanned
        return replace(cp, last_key=last, rows_done=done,
                       rows_total=done if scanned < size else max(cp.rows_total, done),
                       batches=cp.batches + 1, batch_size=size, finished=scanned < size,
                       rows_per_s=rate), max(cur.rowcount, 0)

    async def _page_batch(self, conn: Conn, cp: Checkpoint, size: int,
                          rate: float | None) -> tuple[Checkpoint, int]:
        """The next range of pages (a table without a key), in the caller's transaction."""
        start, end, _ = key_ranges.page_extent(cp)
        lo = int(cp.last_key[0]) if cp.last_key else start
        # Pages per batch by the table's rows per page, which a part's own
        # counts estimate as well as the whole table's.
        hi = min(end, lo + tid_ranges.pages_for(size, cp.rows_total, max(1, end - start)))
        cur = await conn.execute(tid_ranges.update_query(self.spec),
                                 [tid_ranges.tid(lo), tid_ranges.tid(hi)])
        updated = max(cur.rowcount, 0)
        done = round((hi - start) / (end - start) * cp.rows_total) if end > start \
            else cp.rows_total
        return replace(cp, last_key=[str(hi)], rows_done=max(cp.rows_done, done),
                       rows_total=max(cp.rows_total, done), batches=cp.batches + 1,
                       batch_size=size, finished=hi >= end, rows_per_s=rate), updated

    async def _walk(self, conn: Conn, cp: Checkpoint, lane: int) -> None:
        """Walk one part to its end on ``conn``: batch, checkpoint, repeat."""
        assert self._stats is not None
        stats = self._stats
        size = cp.batch_size
        while not cp.finished:
            await self._wait_for_throttles(conn, stats)
            await self._acknowledge_settings(conn)
            size = min(max(size, self.opts.min_size), self.opts.max_size)
            assert cp.max_key is not None

            def shrink(_: BaseException) -> None:
                # A timeout or lock failure on a big batch: retry with a smaller one.
                nonlocal size
                size = max(self.opts.min_size, size // 2)

            async def one_batch(cp: Checkpoint = cp) -> tuple[Checkpoint, float, int,
                                                              journal.Control, float]:
                t0 = time.monotonic()
                async with conn.transaction():
                    # Both timeouts in one round trip: per-batch overhead is what
                    # separates a batched backfill from one big UPDATE.
                    await conn.execute(timeouts(self.settings.lock_timeout_ms,
                                                self.opts.statement_timeout_ms, local=True))
                    batch = self._page_batch if self.by_pages else self._keyset_batch
                    # The size as of this attempt: shrink() halves it for a retry.
                    new, updated = await batch(conn, cp, size,  # noqa: B023
                                               stats.rate_last_minute)
                    t_cp = time.monotonic()
                    control = await journal.save_checkpoint(conn, self.job_id, self.step.id, new)
                    cp_s = time.monotonic() - t_cp
                return new, (time.monotonic() - t0) * 1000, updated, control, cp_s

            new, elapsed_ms, updated, control, cp_s = await with_retries(
                f"{self.step.id} batch", one_batch, attempts=self.opts.max_attempts,
                on_retry=shrink,
            )
            stats.observe(new.rows_done - cp.rows_done,
                          elapsed_ms / 1000 + self.opts.sleep_ms / 1000, lane=lane)
            self._count(new)
            stats.rows_updated += updated
            self.rows_updated = stats.rows_updated
            stats.batches += 1
            stats.checkpoint_s += cp_s
            cp = new
            size = next_batch_size(size, elapsed_ms, self.opts)
            stats.batch_size = size
            if not cp.finished:
                # Read with the batch's checkpoint: a pause or cancel stops exactly
                # here, and new settings apply from the next batch on.
                self._obey(control)
                self._last_request_poll = time.monotonic()
            self.progress.backfill(self.step, stats)
            if not cp.finished and self.opts.sleep_ms:
                await anyio.sleep(self.opts.sleep_ms / 1000)
        stats.lane_done(lane)

    def _count(self, cp: Checkpoint) -> None:
        assert self._stats is not None
        self._totals[cp.part] = (cp.rows_done, max(cp.rows_total, cp.rows_done))
        self._stats.rows_done = sum(done for done, _ in self._totals.values())
        self._stats.rows_total = sum(total for _, total in self._totals.values())

    # -- the workers ------------------------------------------------------------

    async def _worker_count(self, wanted: int) -> int:
        """At most ``wanted``, and never so many that the application is left without slots."""
        if wanted <= 1:
            return wanted
        cur = await self.conn.execute(_FREE_SLOTS)
        row = await cur.fetchone()
        assert row is not None
        free, most = int(row[0]), int(row[1])
        spare = max(SPARE_CONNECTIONS_MIN, int(most * SPARE_CONNECTIONS_SHARE))
        n = max(1, min(wanted, free - spare + 1))
        if n < wanted:
            log.warning("fewer backfill workers than asked: the application keeps its "
                        "connection slots", job=self.job_id, step=self.step.id, asked=wanted,
                        workers=n, free_slots=free, kept_free=spare)
        return n

    async def _walk_parts(self, conn: Conn, queue: list[Checkpoint], lane: int) -> None:
        """One worker: take the next part not yet taken, walk it; until none is left."""
        try:
            while queue:
                self._check_stop()
                await self._walk(conn, queue.pop(0), lane)
        except _Stop:
            return
        except Exception as exc:  # re-raised by run() once every worker has ended
            # The others end after their current batch, whose checkpoint
            # commits with it: nothing is cut off half-way.
            if self._failure is None:
                self._failure = exc

    async def _run_parts(self, todo: list[Checkpoint]) -> None:
        n = await self._worker_count(min(self.workers, len(todo)))
        queue = list(todo)
        if n == 1:
            await self._walk_parts(self.conn, queue, 0)
            return
        assert self.dsn is not None
        async with AsyncExitStack() as stack:
            conns = [self.conn]
            setup = session_setup(self.settings)
            for _ in range(n - 1):
                extra = await connect(self.dsn)
                stack.push_async_callback(_close, extra)
                if setup is not None:
                    await extra.execute(setup)
                conns.append(extra)
            async with anyio.create_task_group() as tg:
                for lane, c in enumerate(conns):
                    tg.start_soon(self._walk_parts, c, queue, lane)

    async def run(self) -> None:
        parts = await self._start()
        # rows_done comes from the checkpoints, so continuing after a crash or
        # a lost connection neither restarts nor double counts it.
        self._stats = BackfillStats(rows_done=0, rows_total=0, rows_updated=self.rows_updated,
                                    batch_size=parts[0].batch_size)
        while True:
            self._totals.clear()
            for cp in parts:
                self._count(cp)
            todo = [cp for cp in parts if not cp.finished]
            if todo:
                await self._run_parts(todo)
                if self._failure is not None:
                    raise self._failure
            again = await self._rewritten(parts)
            if again is None:
                break
            parts = again
        # Every part's last checkpoint is committed; the step is done.  A crash
        # right before this finds every part finished and comes straight here.
        async with self.conn.transaction():
            await journal.set_step(self.conn, self.job_id, self.step.id, StepStatus.DONE)
        self.progress.backfill(self.step, self._stats, force=True)


async def _close(conn: Conn) -> None:
    with anyio.CancelScope(shield=True):
        await conn.close()


__all__ = ["Backfill", "BatchOptions", "is_retryable"]
