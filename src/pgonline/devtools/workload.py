"""A small concurrent application workload, to show a change is really online.

Each client holds its own connection and loops over single-row statements on
a table shaped like the demo's ``users`` (``id`` primary key, ``hits`` int):
reads by id, ``hits = hits + 1`` updates and inserts.  Every statement's
latency is recorded, and every successful increment is counted per id so
that the final table can be checked for lost updates.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
from psycopg import sql

from pgonline.connection import connect


@dataclass
class WorkloadStats:
    latencies_ms: list[float] = field(default_factory=list)
    samples: list[tuple[float, float]] = field(default_factory=list)  # (t, latency_ms)
    errors: list[str] = field(default_factory=list)
    increments: Counter[int] = field(default_factory=Counter)
    inserted_ids: list[int] = field(default_factory=list)
    ops: int = 0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        data = sorted(self.latencies_ms)
        k = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[k]

    @property
    def max_ms(self) -> float:
        return max(self.latencies_ms, default=0.0)

    def summary(self) -> dict[str, Any]:
        return {"ops": self.ops, "errors": len(self.errors),
                "p50_ms": round(self.percentile(50), 2), "p99_ms": round(self.percentile(99), 2),
                "max_ms": round(self.max_ms, 2)}


class Workload:
    """``async with Workload(...) as w:`` runs clients until the block ends."""

    def __init__(self, dsn: str, *, table: str = "users", schema: str = "public", clients: int = 4,
                 max_id: int, rate_per_client: float | None = None, write_ratio: float = 0.5,
                 insert_ratio: float = 0.0, seed: int = 7) -> None:
        self.dsn = dsn
        self.table = sql.Identifier(schema, table)
        self.clients = clients
        self.max_id = max_id
        self.rate = rate_per_client
        self.write_ratio = write_ratio
        self.insert_ratio = insert_ratio
        self.rng = random.Random(seed)
        self.stats = WorkloadStats()
        self.t0 = 0.0
        self._stop = anyio.Event()
        self._tg: Any = None

    async def _client(self, n: int) -> None:
        conn = await connect(self.dsn)
        rng = random.Random(self.rng.random() + n)
        # Explicit columns: a prepared ``SELECT *`` fails with 0A000 "cached plan
        # must not change result type" after any column is added, whatever tool
        # adds it (PostgreSQL behaviour; see README "Caveats").
        read = sql.SQL("SELECT id, hits FROM {} WHERE id = %s").format(self.table)
        write = sql.SQL("UPDATE {} SET hits = hits + 1 WHERE id = %s").format(self.table)
        insert = sql.SQL("INSERT INTO {} DEFAULT VALUES RETURNING id").format(self.table)
        period = None if not self.rate else 1.0 / self.rate
        try:
            while not self._stop.is_set():
                start = time.monotonic()
                roll = rng.random()
                ident = rng.randint(1, self.max_id)
                try:
                    if roll < self.insert_ratio:
                        cur = await conn.execute(insert)
                        row = await cur.fetchone()
                        if row:
                            self.stats.inserted_ids.append(int(str(row[0])))
                    elif roll < self.insert_ratio + self.write_ratio:
                        cur = await conn.execute(write, [ident])
                        if cur.rowcount == 1:
                            self.stats.increments[ident] += 1
                    else:
                        await (await conn.execute(read, [ident])).fetchone()
                except psycopg.Error as exc:
                    self.stats.errors.append(f"{exc.sqlstate}: {exc}".strip())
                    if conn.broken:
                        conn = await connect(self.dsn)
                end = time.monotonic()
                ms = (end - start) * 1000
                self.stats.latencies_ms.append(ms)
                self.stats.samples.append((end - self.t0, ms))
                self.stats.ops += 1
                if period is not None:
                    await anyio.sleep(max(0.0, period - (end - start)))
                else:
                    await anyio.sleep(0.001)
        finally:
            await conn.close()

    async def __aenter__(self) -> Workload:
        self.t0 = time.monotonic()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for n in range(self.clients):
            self._tg.start_soon(self._client, n)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._tg.__aexit__(*exc)
