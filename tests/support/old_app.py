"""An application that does not know the column being changed: it inserts and updates
rows without naming it, in a thread, and records every error with its wall-clock time."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import psycopg


@dataclass
class OldAppStats:
    inserts: int = 0
    updates: int = 0
    errors: list[tuple[float, str | None, str]] = field(default_factory=list)  # (time, sqlstate, msg)

    @property
    def ops(self) -> int:
        return self.inserts + self.updates


class OldApp:
    """``with OldApp(dsn, insert_sql) as app:`` writes until the block ends (about 100-200/s).

    ``insert_sql`` is the application's INSERT, which leaves the new column out;
    updates bump ``hits`` of a random existing row (ids 1..max_id).
    """

    def __init__(self, dsn: str, insert_sql: str, *, max_id: int, seed: int = 3) -> None:
        self.dsn = dsn
        self.insert_sql = insert_sql
        self.max_id = max_id
        self.rng = random.Random(seed)
        self.stats = OldAppStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            n = 0
            while not self._stop.is_set():
                n += 1
                try:
                    if n % 2:
                        conn.execute(self.insert_sql, {"n": n})
                        self.stats.inserts += 1
                    else:
                        conn.execute("UPDATE users SET hits = hits + 1 WHERE id = %s",
                                     [self.rng.randint(1, self.max_id)])
                        self.stats.updates += 1
                except psycopg.Error as exc:
                    self.stats.errors.append((time.time(), exc.sqlstate, str(exc).strip()))
                time.sleep(0.004)

    def __enter__(self) -> OldApp:
        self._thread.start()
        time.sleep(0.3)  # traffic is flowing before the change starts
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def helper_objects(db: psycopg.Connection[Any]) -> list[str]:
    """Our fill triggers and functions still in the database."""
    rows = db.execute(
        "SELECT 'trigger ' || tgname FROM pg_trigger WHERE tgname LIKE 'zz_pgonline_fill%'"
        " UNION ALL SELECT 'function ' || proname FROM pg_proc"
        " WHERE proname LIKE 'zz_pgonline_fill%'").fetchall()
    return [r[0] for r in rows]
