"""An application writer in its own process, logging every committed write (chaos tests).

Run as ``python -m tests.support.writer --dsn ... --log FILE ...`` and stop
it with SIGTERM.  It models application code that does not know about the
change being made: one autocommit connection, single-row INSERTs that name
only the columns it knows, UPDATEs of existing columns with absolute values,
DELETEs, paced at ``--rate`` operations per second.

Every write is logged as one JSON line *after* its commit returned, so the
log is exactly the set of writes the application believes committed; every
error is logged too (the chaos tests fail on any).  Several writers can run
side by side on one table: ``--partition k/n`` makes a writer touch only the
pre-existing rows with ``id % n = k`` and the rows it inserted itself, so
the logs never race on a row and can be replayed independently.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import sql

INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class WriterSpec:
    """What the application knows about the table."""

    table: str
    insert_columns: tuple[str, ...]  # what an INSERT names
    update_columns: tuple[str, ...]  # what an UPDATE sets
    email_columns: tuple[str, ...] = ()  # columns holding unique e-mail-like text
    int_columns: tuple[str, ...] = ()  # integer columns (others get short text)
    md5_columns: tuple[str, ...] = ()  # "target=source": the application writes md5(source)
    # "column:k/n:max": a foreign key column; the application writes the id of
    # a pre-existing parent row with id % n = k, id <= max (rows that no
    # writer of the parent table touches, so the reference always holds).
    ref_columns: tuple[str, ...] = ()
    # psycopg prepares a statement on the server after its 5th execution; a
    # prepared INSERT ... RETURNING id then fails with 0A000 "cached plan must
    # not change result type" once a type change of id is cut over (server
    # behaviour, documented in docs/strategies/change-type.md).  False models
    # an application that does not keep prepared statements (a pooler in
    # transaction mode, most ORMs' defaults).
    prepared: bool = True

    def argv(self) -> list[str]:
        return [*([] if self.prepared else ["--no-prepare"]),
                "--table", self.table, "--insert", ",".join(self.insert_columns),
                "--update", ",".join(self.update_columns),
                "--email", ",".join(self.email_columns), "--int", ",".join(self.int_columns),
                "--md5", ",".join(self.md5_columns), "--ref", ",".join(self.ref_columns)]

    def values(self, columns: tuple[str, ...], st: _State) -> dict[str, Any]:
        derived = dict(pair.split("=") for pair in self.md5_columns)
        values = {c: _value(self, c, st) for c in columns if c not in derived}
        for target, source in derived.items():
            if target in columns:
                values[target] = hashlib.md5(values[source].encode()).hexdigest()
        return values


@dataclass
class _State:
    rng: random.Random
    tag: str
    ids: list[int]
    stop: bool = False
    seq: int = 0
    ops: int = 0
    max_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)


def _value(spec: WriterSpec, column: str, st: _State) -> Any:
    st.seq += 1
    for ref in spec.ref_columns:
        name, part, top = ref.split(":")
        if name == column:
            k, n = (int(x) for x in part.split("/"))
            return st.rng.randrange(k if k > 0 else n, int(top) + 1, n)
    if column in spec.email_columns:
        return f"{st.tag}-{st.seq}@example.com"
    if column in spec.int_columns:
        return st.rng.randint(0, INT_MAX)
    return f"{st.tag} note {st.seq}"


def _emit(log: IO[str], record: dict[str, Any]) -> None:
    log.write(json.dumps(record) + "\n")
    log.flush()


def _ops(st: _State, insert_ratio: float, delete_ratio: float) -> Iterator[str]:
    while not st.stop:
        roll = st.rng.random()
        if roll < insert_ratio or not st.ids:
            yield "insert"
        elif roll < insert_ratio + delete_ratio:
            yield "delete"
        else:
            yield "update"


def run(dsn: str, spec: WriterSpec, log: IO[str], *, partition: tuple[int, int], initial_max: int,
        rate: float, seed: int, insert_ratio: float = 0.4, delete_ratio: float = 0.15) -> None:
    k, n = partition
    st = _State(rng=random.Random(seed), tag=f"w{k}s{seed}",
                ids=[i for i in range(1, initial_max + 1) if i % n == k])

    def stop(*_: object) -> None:
        st.stop = True

    signal.signal(signal.SIGTERM, stop)
    table = sql.Identifier(spec.table)
    ins_cols = sql.SQL(", ").join(map(sql.Identifier, spec.insert_columns))
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING id").format(
        table, ins_cols, sql.SQL(", ").join(sql.Placeholder() * len(spec.insert_columns)))
    update = sql.SQL("UPDATE {} SET {} WHERE id = %s RETURNING id").format(
        table, sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c))
                                  for c in spec.update_columns))
    delete = sql.SQL("DELETE FROM {} WHERE id = %s RETURNING id").format(table)
    period = 1.0 / rate
    threshold = {} if spec.prepared else {"prepare_threshold": None}

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(dsn, autocommit=True, application_name="chaos-writer", **threshold)

    conn = connect()
    _emit(log, {"op": "ready"})
    t0 = next_at = time.monotonic()
    for op in _ops(st, insert_ratio, delete_ratio):
        start = time.monotonic()
        try:
            if op == "insert":
                values = spec.values(spec.insert_columns, st)
                row = conn.execute(insert, list(values.values())).fetchone()
                assert row is not None
                st.ids.append(int(row[0]))
                _emit(log, {"op": "insert", "id": int(row[0]), "values": values})
            else:
                ident = st.ids[st.rng.randrange(len(st.ids))]
                if op == "update":
                    values = spec.values(spec.update_columns, st)
                    row = conn.execute(update, [*values.values(), ident]).fetchone()
                    _emit(log, {"op": "update", "id": ident, "values": values,
                                "found": row is not None})
                else:
                    row = conn.execute(delete, [ident]).fetchone()
                    st.ids.remove(ident)
                    _emit(log, {"op": "delete", "id": ident, "found": row is not None})
        except psycopg.Error as exc:
            # Any error is what the application would see: the test fails on it.
            _emit(log, {"op": "error", "sqlstate": exc.sqlstate, "error": str(exc).strip(),
                        "attempted": op})
            if conn.broken:
                conn = connect()
        ms = (time.monotonic() - start) * 1000
        st.ops += 1
        st.max_ms = max(st.max_ms, ms)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    elapsed = time.monotonic() - t0
    _emit(log, {"op": "stats", "ops": st.ops, "elapsed_s": elapsed, "max_ms": st.max_ms})
    conn.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dsn", required=True)
    p.add_argument("--log", required=True, type=Path)
    p.add_argument("--table", required=True)
    p.add_argument("--insert", required=True)
    p.add_argument("--update", required=True)
    p.add_argument("--email", default="")
    p.add_argument("--int", default="")
    p.add_argument("--md5", default="")
    p.add_argument("--ref", default="")
    p.add_argument("--no-prepare", action="store_true")
    p.add_argument("--partition", default="0/1")
    p.add_argument("--initial-max", type=int, required=True)
    p.add_argument("--rate", type=float, default=150.0)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    def cols(text: str) -> tuple[str, ...]:
        return tuple(c for c in text.split(",") if c)

    spec = WriterSpec(table=a.table, insert_columns=cols(a.insert), update_columns=cols(a.update),
                      email_columns=cols(a.email), int_columns=cols(a.int),
                      md5_columns=cols(a.md5), ref_columns=cols(a.ref),
                      prepared=not a.no_prepare)
    k, n = (int(x) for x in a.partition.split("/"))
    with a.log.open("a", encoding="utf-8") as log:
        run(a.dsn, spec, log, partition=(k, n), initial_max=a.initial_max, rate=a.rate,
            seed=a.seed)


if __name__ == "__main__":
    main(sys.argv[1:])
