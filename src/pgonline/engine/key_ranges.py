"""Splitting a backfill's range into disjoint parts, for ``--workers N``.

A part is an ordinary checkpoint: a keyset part covers the keys in
``(last_key, max_key]``, a page part the pages ``[last_key, max_key[0])``.
Each part is walked by one worker on its own connection, and its batches
commit with its own checkpoint row.  Why walking the parts at once is safe:

* **The parts are disjoint and cover the range.** The boundaries are keys
  the server sorted in the key's own order (``ORDER BY`` on the columns, not
  on their text), strictly increasing, and each part's upper bound is the
  next part's exclusive lower bound.  Every key of the range is in exactly
  one part, so no row is filled twice or missed.
* **Workers never wait for each other's rows.** Two parts share no row, so
  their batches never queue on each other's row locks; what they share
  (index pages, WAL) is held for microseconds.
* **Every part is as resumable as a whole walk.** A part's checkpoint commits
  with its batch, and the parts themselves are written in one transaction
  (:func:`pgonline.engine.journal.replace_parts`): after a crash each part
  continues where it stopped, whatever ``--workers`` the resume has.

The boundaries come from a sample of the table's pages (``TABLESAMPLE
SYSTEM``), a few hundred pages whatever the table's size: the parts are about
equal in rows, not exactly, which only matters for when the last one ends.
"""

from __future__ import annotations

from dataclasses import replace

from pgonline.engine.journal import Checkpoint

# Pages read to choose the boundaries (per part, and at least): enough rows
# for quantiles that are within a few percent, still a blink to read.
SAMPLE_PAGES_PER_PART = 32
MIN_SAMPLE_PAGES = 128


def sample_percent(pages: int, parts: int) -> float:
    """The ``TABLESAMPLE SYSTEM`` percentage that reads about the pages we want."""
    want = max(MIN_SAMPLE_PAGES, SAMPLE_PAGES_PER_PART * parts)
    return 100.0 if pages <= want else max(0.0001, 100.0 * want / pages)


def _shares(total: int, weights: list[int]) -> list[int]:
    """``total`` rows shared in proportion to ``weights`` (each part's sampled rows or pages)."""
    whole = sum(weights)
    if whole <= 0:
        return [total // len(weights)] * len(weights)
    return [round(total * w / whole) for w in weights]


def split_keyset(cp: Checkpoint, parts: int, sample: list[list[str]]) -> list[Checkpoint]:
    """``cp``'s remaining keys in up to ``parts`` parts, cut at quantiles of ``sample``.

    ``sample`` holds keys of the remaining range, sorted by the server in key
    order.  Fewer parts come back when the sample has too few distinct keys
    (a small range): a part with nothing in it would only cost a connection.
    The first part keeps what ``cp`` had done; the rows still to do are
    shared by the sample.
    """
    assert cp.max_key is not None
    bounds: list[list[str]] = []
    cuts: list[int] = []
    for i in range(1, parts):
        at = len(sample) * i // parts
        if at >= len(sample):
            break
        key = sample[at]
        if key == cp.max_key or (bounds and key == bounds[-1]) or key == cp.last_key:
            continue
        bounds.append(key)
        cuts.append(at)
    if not bounds:
        return [cp]
    edges: list[list[str] | None] = [cp.last_key, *bounds, cp.max_key]
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, len(sample)], strict=True)]
    todo = _shares(max(0, cp.rows_total - cp.rows_done), [s + 1 for s in sizes])
    out = []
    for i, rows in enumerate(todo):
        done = cp.rows_done if i == 0 else 0
        out.append(Checkpoint(last_key=edges[i], max_key=edges[i + 1], rows_done=done,
                              rows_total=done + rows, batches=cp.batches if i == 0 else 0,
                              batch_size=cp.batch_size, finished=False, part=i))
    return out


def page_extent(cp: Checkpoint) -> tuple[int, int, str]:
    """A page part's first page, end page (exclusive) and the file node it was split on.

    ``max_key`` is ``[end, node]`` for the walk of a whole table (version 3
    checkpoints too) and ``[end, node, start]`` for a part.
    """
    assert cp.max_key is not None
    start = int(cp.max_key[2]) if len(cp.max_key) > 2 else 0
    return start, int(cp.max_key[0]), cp.max_key[1]


def split_pages(cp: Checkpoint, parts: int) -> list[Checkpoint]:
    """``cp``'s remaining pages in up to ``parts`` parts of equal page counts."""
    start, end, node = page_extent(cp)
    lo = int(cp.last_key[0]) if cp.last_key else start
    parts = max(1, min(parts, end - lo))
    if parts == 1:
        return [cp]
    edges = [lo + (end - lo) * i // parts for i in range(parts + 1)]
    todo = _shares(max(0, cp.rows_total - cp.rows_done), [1] * parts)
    out = []
    for i, rows in enumerate(todo):
        done = cp.rows_done if i == 0 else 0
        # The first part keeps its old start, so its share of rows done stays
        # proportional to the pages it walked before and after the split.
        first = start if i == 0 else edges[i]
        out.append(replace(cp, last_key=[str(edges[i])], max_key=[str(edges[i + 1]), node,
                                                                   str(first)],
                           rows_done=done, rows_total=done + rows,
                           batches=cp.batches if i == 0 else 0, finished=False, part=i))
    return out
