"""Chaos runs: ``online`` killed with SIGKILL at random moments while an application writes.

A :class:`Chaos` run drives one change phase by phase.  Each phase is run
as a subprocess (the command the first time, ``online resume JOB`` after
that) and killed at moments chosen by *kill triggers* drawn from a seeded
RNG; after each kill the phase is started again, until a run exits 0.
Triggers wait on the journal (the checkpoint's row count, a step's status)
or on the server (our DDL queued behind an application transaction), so
the kills land in each of expand, backfill and contract, and in the middle
of steps rather than only between them.

Meanwhile writers (:mod:`tests.support.writer`) log every committed write;
:func:`replay` turns the logs into the table state the application expects.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support.writer import WriterSpec

REPO = Path(__file__).resolve().parents[2]
TABLE = "chaos"
# Slow, small batches: the backfill lasts long enough to be killed a few
# times in the middle, and the walk is checkpointed every 200 rows.
BATCHES = ["--batch-size", "200", "--min-batch-size", "200", "--max-batch-size", "200",
           "--sleep-ms", "30"]
EXIT_JOB_BUSY = 6  # README "Exit codes": the job is held by another runner
WAIT_S = 60.0
POLL_S = 0.01


def seed_from_env() -> int:
    """PGONLINE_CHAOS_SEED replays a failed run; otherwise a fresh seed each run."""
    env = os.environ.get("PGONLINE_CHAOS_SEED")
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def create_table(db: psycopg.Connection[Any], rows: int, *, id_type: str = "bigserial") -> None:
    db.execute(f"""
        CREATE TABLE {TABLE} (
            id {id_type} PRIMARY KEY,
            email text NOT NULL UNIQUE,
            hits integer NOT NULL DEFAULT 0,
            note text
        )""")
    db.execute(f"CREATE INDEX {TABLE}_hits_idx ON {TABLE} (hits)")
    db.execute(f"INSERT INTO {TABLE} (email, hits, note)"  # noqa: S608
               " SELECT 'user' || g || '@example.com', g, 'n' || g FROM generate_series(1, %s) g",
               [rows])
    db.execute(f"ANALYZE {TABLE}")


def initial_rows(rows: int) -> dict[int, dict[str, Any]]:
    """The state :func:`create_table` leaves, as :func:`replay` starts from it."""
    return {g: {"email": f"user{g}@example.com", "hits": g, "note": f"n{g}"}
            for g in range(1, rows + 1)}


# ---------------------------------------------------------------- writers


@dataclass
class Writer:
    proc: subprocess.Popen[bytes]
    log: Path
    name: str

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=30)
        if rc != 0:
            raise AssertionError(f"writer {self.name} exited {rc}: "
                                 + self.log.with_suffix(".stderr").read_text()[-2000:])


def start_writer(dsn: str, spec: WriterSpec, log: Path, *, name: str, partition: str,
                 initial_max: int, seed: int, rate: float = 150.0) -> Writer:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.writer", "--dsn", dsn, "--log", str(log),
         *spec.argv(), "--partition", partition, "--initial-max", str(initial_max),
         "--rate", str(rate), "--seed", str(seed)],
        cwd=REPO, stderr=log.with_suffix(".stderr").open("wb"))
    w = Writer(proc, log, name)
    deadline = time.monotonic() + WAIT_S
    while not any(r["op"] == "ready" for r in w.records()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"writer {name} did not start: "
                                 + log.with_suffix(".stderr").read_text()[-2000:])
        time.sleep(POLL_S)
    return w


@dataclass
class WriterReport:
    writes: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    missing: list[dict[str, Any]] = field(default_factory=list)  # UPDATE/DELETE found no row
    rates: dict[str, float] = field(default_factory=dict)  # ops/s per writer
    max_ms: dict[str, float] = field(default_factory=dict)


def replay(initial: dict[int, dict[str, Any]], writers: list[Writer],
           rename: dict[str, str] | None = None) -> tuple[dict[int, dict[str, Any]], WriterReport]:
    """The table state the writers' logs imply, and what they report.

    The writers touch disjoint rows (``--partition``), so each log is applied
    on its own, in its order: an insert adds the row, an update overwrites
    the columns it set, a delete removes the row.  ``rename`` maps a column
    name the writer used to the name it has after the change.
    """
    names = rename or {}
    state = {i: {names.get(c, c): v for c, v in row.items()} for i, row in initial.items()}
    report = WriterReport()
    for w in writers:
        for r in w.records():
            op = r["op"]
            values = {names.get(c, c): v for c, v in r.get("values", {}).items()}
            if op == "insert":
                state[r["id"]] = {**state.get(r["id"], {}), **values}
            elif op == "update":
                state[r["id"]].update(values)
            elif op == "delete":
                state.pop(r["id"], None)
            elif op == "error":
                report.errors.append({"writer": w.name, **r})
            elif op == "stats":
                report.rates[w.name] = r["ops"] / max(r["elapsed_s"], 1e-9)
                report.max_ms[w.name] = r["max_ms"]
            if op in ("update", "delete") and not r["found"]:
                report.missing.append({"writer": w.name, **r})
            if op in ("insert", "update", "delete"):
                report.writes += 1
    return state, report


def table_rows(db: psycopg.Connection[Any], columns: list[str],
               table: str = TABLE) -> dict[int, dict[str, Any]]:
    query = sql.SQL("SELECT id, {} FROM {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table))
    return {int(r[0]): dict(zip(columns, r[1:], strict=True)) for r in db.execute(query)}


def row_differences(expected: dict[int, dict[str, Any]], actual: dict[int, dict[str, Any]],
                    columns: list[str]) -> dict[str, Any]:
    """Empty when every committed write is in the table and nothing else changed."""
    missing = sorted(expected.keys() - actual.keys())
    extra = sorted(actual.keys() - expected.keys())
    wrong = [(i, {c: expected[i].get(c) for c in columns}, actual[i])
             for i in sorted(expected.keys() & actual.keys())
             if any(expected[i].get(c) != actual[i][c] for c in columns)]
    diff: dict[str, Any] = {}
    if missing:
        diff["missing rows"] = (len(missing), missing[:5])
    if extra:
        diff["unexpected rows"] = (len(extra), extra[:5])
    if wrong:
        diff["wrong values"] = (len(wrong), wrong[:3])
    return diff


# ---------------------------------------------------------------- the schema afterwards


def leftovers(db: psycopg.Connection[Any], table: str = TABLE) -> list[tuple[str, str]]:
    """Helper objects pgonline created and should have removed, and anything half-done.

    Matched by the ``pgonline`` every helper name contains (``zz_pgonline_*``
    triggers and functions, ``pgonline_nn_*`` checks, ``*_pgonline_new``
    shadow columns and index twins, ``*_pgonline_old`` parked columns), plus
    any trigger on the table (it has none of its own), any NOT VALID
    constraint and any INVALID index.
    """
    return [(r[0], r[1]) for r in db.execute(
        """
        SELECT 'trigger', tgname FROM pg_trigger
         WHERE tgrelid = %(t)s::regclass AND NOT tgisinternal
        UNION ALL
        SELECT 'function', p.oid::regprocedure::text FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND p.proname LIKE '%%pgonline%%'
        UNION ALL
        SELECT 'constraint', conname || CASE WHEN convalidated THEN '' ELSE ' (NOT VALID)' END
          FROM pg_constraint WHERE conrelid = %(t)s::regclass
           AND (conname LIKE '%%pgonline%%' OR NOT convalidated)
        UNION ALL
        SELECT 'index', c.relname || CASE WHEN i.indisvalid THEN '' ELSE ' (INVALID)' END
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE i.indrelid = %(t)s::regclass AND (c.relname LIKE '%%pgonline%%' OR NOT i.indisvalid)
        UNION ALL
        SELECT 'column', attname FROM pg_attribute
         WHERE attrelid = %(t)s::regclass AND attnum > 0 AND NOT attisdropped
           AND attname LIKE '%%pgonline%%'
        UNION ALL
        SELECT 'job', id || ' ' || status FROM pgonline.jobs WHERE status <> 'done'
        """, {"t": table}).fetchall()]


def index_names(db: psycopg.Connection[Any], table: str = TABLE) -> set[str]:
    return {r[0] for r in db.execute(
        "SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = %s::regclass",
        [table]).fetchall()}


# ---------------------------------------------------------------- killing


@dataclass
class Kill:
    stage: str
    trigger: str
    next_step: str | None  # the first step the journal did not record as done
    phase: str | None  # that step's phase
    rows_done: int | None
    at_s: float


class Trigger:
    """When to kill the run: ``wait`` returns once it is time (False if the run ended first)."""

    @property
    def label(self) -> str:
        return type(self).__name__

    def before_spawn(self, chaos: Chaos) -> None:
        """Set the scene before the run starts."""

    def ready(self, chaos: Chaos) -> bool:
        raise NotImplementedError

    def after_kill(self, chaos: Chaos) -> None:
        """Undo what before_spawn did (the run is dead by now)."""


@dataclass
class AfterStart(Trigger):
    """Kill ``delay`` seconds after the run took over the job."""

    delay: float

    @property
    def label(self) -> str:
        return f"{self.delay:.2f}s after start"

    def ready(self, chaos: Chaos) -> bool:
        if not chaos.job_touched():
            return False
        time.sleep(self.delay)
        return True


@dataclass
class BackfillAt(Trigger):
    """Kill once the backfill checkpoint (of backfill step ``step``) has passed ``rows`` rows."""

    rows: int
    step: str = "backfill"

    @property
    def label(self) -> str:
        return f"{self.step} past {self.rows} rows"

    def ready(self, chaos: Chaos) -> bool:
        cp = chaos.checkpoint(self.step)
        return cp is not None and cp[0] >= self.rows and not cp[1] and chaos.job_touched()


@dataclass
class AfterStep(Trigger):
    """Kill ``delay`` seconds after step ``step`` was recorded done by this run."""

    step: str
    delay: float

    @property
    def label(self) -> str:
        return f"{self.delay:.2f}s after {self.step}"

    def ready(self, chaos: Chaos) -> bool:
        if not chaos.step_done_since_spawn(self.step):
            return False
        time.sleep(self.delay)
        return True


class Blocked(Trigger):
    """Kill while our DDL is queued for its lock behind an application transaction.

    A session holds ACCESS SHARE on the table (a transaction that has read
    it), so the run's next ACCESS EXCLUSIVE step waits, times out after
    lock_timeout and retries: the kill lands in the middle of a step, with
    the application's writes queued behind ours.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay  # how long into the waiting and retrying to kill
        self.blocker: psycopg.Connection[Any] | None = None

    @property
    def label(self) -> str:
        return f"{self.delay:.2f}s into waiting for a lock"

    def before_spawn(self, chaos: Chaos) -> None:
        self.blocker = psycopg.connect(chaos.dsn, application_name="chaos-blocker")
        self.blocker.execute(sql.SQL("SELECT 1 FROM {} LIMIT 1").format(sql.Identifier(TABLE)))

    def ready(self, chaos: Chaos) -> bool:
        row = chaos.db.execute(
            """SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                               WHERE NOT l.granted AND l.relation = %s::regclass
                                 AND a.application_name = 'pgonline')""", [TABLE]).fetchone()
        if not (row and row[0]):
            return False
        time.sleep(self.delay)
        return True

    def after_kill(self, chaos: Chaos) -> None:
        if self.blocker is not None:
            self.blocker.close()  # rolls back: the application transaction ends
            self.blocker = None


@dataclass
class Chaos:
    db: psycopg.Connection[Any]
    dsn: str
    workdir: Path
    seed: int
    rng: random.Random = field(init=False)
    kills: list[Kill] = field(default_factory=list)
    runs: int = 0
    # Appended to every run, first or resume (e.g. --workers N).
    run_options: list[str] = field(default_factory=list)
    busy_retries: int = 0
    job: int | None = None
    writers: list[Writer] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    _spawned_at: datetime | None = None
    _last_err: str = ""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # -- journal probes (the journal is the only shared truth between runs)

    def job_touched(self) -> bool:
        """The current run has taken over the job (it set it running after it started)."""
        row = self.db.execute(
            "SELECT id FROM pgonline.jobs WHERE status = 'running' AND updated_at >= %s"
            " ORDER BY id DESC LIMIT 1", [self._spawned_at]).fetchone() if self._journal() else None
        return row is not None

    def checkpoint(self, step: str = "backfill") -> tuple[int, bool] | None:
        if self.job is None or not self._journal():
            return None
        # Summed over the step's parts (--workers splits the range).
        row = self.db.execute("SELECT sum(rows_done), bool_and(finished) FROM pgonline.checkpoints"
                              " WHERE job_id = %s AND step_id = %s", [self.job, step]).fetchone()
        return None if row is None or row[0] is None else (int(row[0]), bool(row[1]))

    def step_done_since_spawn(self, step: str) -> bool:
        if self.job is None:
            return False
        row = self.db.execute(
            "SELECT status = 'done' AND coalesce(finished_at >= %s, false) FROM pgonline.steps"
            " WHERE job_id = %s AND step_id = %s", [self._spawned_at, self.job, step]).fetchone()
        return bool(row and row[0])

    def steps(self) -> list[tuple[str, str, str]]:
        """(step id, phase, status) in plan order."""
        if self.job is None:
            return []
        return [(r[0], r[1], r[2]) for r in self.db.execute(
            """SELECT s.step_id, st->>'phase', s.status
                 FROM pgonline.steps s JOIN pgonline.jobs j ON j.id = s.job_id
                 CROSS JOIN LATERAL jsonb_array_elements(j.plan->'steps') st
                WHERE j.id = %s AND st->>'id' = s.step_id ORDER BY s.ord""", [self.job]).fetchall()]

    def job_status(self) -> str | None:
        if self.job is None:
            return None
        row = self.db.execute("SELECT status FROM pgonline.jobs WHERE id = %s", [self.job]).fetchone()
        return None if row is None else str(row[0])

    def _journal(self) -> bool:
        row = self.db.execute("SELECT to_regclass('pgonline.jobs') IS NOT NULL").fetchone()
        return bool(row and row[0])

    def _find_job(self) -> None:
        if self.job is None and self._journal():
            row = self.db.execute("SELECT min(id) FROM pgonline.jobs").fetchone()
            self.job = None if row is None or row[0] is None else int(row[0])

    def _phase_done(self, phase: str) -> bool:
        order = ["expand", "backfill", "contract"]
        upto = order[: order.index(phase) + 1]
        steps = self.steps()
        return bool(steps) and all(st == "done" for _, ph, st in steps if ph in upto)

    # -- running

    def _spawn(self, command: list[str], phase: str) -> subprocess.Popen[bytes]:
        self._find_job()
        argv = command if self.job is None else ["resume", str(self.job)]
        # Options of a run, not of the command (a resume takes them too).
        argv = [*argv, *self.run_options]
        self.runs += 1
        row = self.db.execute("SELECT clock_timestamp()").fetchone()
        assert row is not None
        self._spawned_at = row[0]
        err = self.workdir / f"online-{self.runs}.stderr"
        return subprocess.Popen(
            [sys.executable, "-m", "pgonline", *argv, "--phase", phase, *BATCHES, "--dsn", self.dsn],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err.open("wb"))

    def _kill(self, proc: subprocess.Popen[bytes], stage: str, trigger: Trigger) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        self._find_job()
        pending = next(((sid, ph) for sid, ph, st in self.steps() if st != "done"), (None, None))
        cp = self.checkpoint()
        self.kills.append(Kill(stage, trigger.label, pending[0], pending[1],
                               None if cp is None else cp[0],
                               round(time.monotonic() - self.t0, 2)))

    def _finish(self, proc: subprocess.Popen[bytes]) -> int:
        rc = proc.wait(timeout=WAIT_S)
        self._last_err = (self.workdir / f"online-{self.runs}.stderr").read_text()[-3000:]
        self._find_job()
        return rc

    def attempt(self, command: list[str], phase: str, trigger: Trigger | None) -> None:
        """One run of ``phase``, killed when ``trigger`` fires; the phase is retried when the
        killed run's server session still holds the job (it notices its client is gone
        only after its current statement)."""
        # Until a run exits 0: a run killed after its last step but before it
        # recorded the job's end leaves the job "running" with every step done,
        # and only a resume closes it.  A finished job cannot be resumed.
        while self.job_status() != "done":
            if trigger is not None:
                trigger.before_spawn(self)
            proc = self._spawn(command, phase)
            try:
                if trigger is not None:
                    deadline = time.monotonic() + WAIT_S
                    while proc.poll() is None and not trigger.ready(self):
                        if time.monotonic() > deadline:
                            raise AssertionError(f"kill trigger {trigger.label} never fired")
                        time.sleep(POLL_S)
                    if proc.poll() is None:
                        self._kill(proc, phase, trigger)
                        return
            finally:
                if trigger is not None:
                    trigger.after_kill(self)
            rc = self._finish(proc)
            if rc == EXIT_JOB_BUSY and "already being run" in self._last_err:
                self.busy_retries += 1
                time.sleep(0.2)
                continue
            if rc != 0:
                raise AssertionError(f"online exited {rc} in phase {phase}:\n{self._last_err}")
            return

    def stage(self, command: list[str], phase: str, triggers: list[Trigger]) -> None:
        """Run ``phase`` once per trigger (killing it), then until it completes."""
        for trigger in triggers:
            self.attempt(command, phase, trigger)
        self.attempt(command, phase, None)
        assert self._phase_done(phase), self.steps()
        assert self.job_status() == ("done" if phase == "contract" else "paused"), self.job_status()

    # -- reporting

    def phases_hit(self) -> set[str]:
        return {k.phase for k in self.kills if k.phase is not None}

    def summary(self, report: WriterReport | None = None) -> str:
        lines = [f"chaos seed {self.seed} (replay: PGONLINE_CHAOS_SEED={self.seed}), "
                 f"{len(self.kills)} kills, {self.runs} runs, {self.busy_retries} busy retries, "
                 f"{time.monotonic() - self.t0:.1f}s, phases hit {sorted(self.phases_hit())}"]
        lines += [f"  kill at {k.at_s}s [{k.stage}] {k.trigger}: next step {k.next_step} "
                  f"({k.phase}), rows done {k.rows_done}" for k in self.kills]
        if report is not None:
            lines.append(f"  writes {report.writes}, errors {len(report.errors)}, "
                         f"rates {({k: round(v) for k, v in report.rates.items()})}, "
                         f"max ms {({k: round(v) for k, v in report.max_ms.items()})}")
            lines += [f"  error: {e}" for e in report.errors[:5]]
        lines.append(f"  journal: {self.steps()}")
        err = self.workdir / f"online-{self.runs}.stderr"
        tail = err.read_text()[-1500:] if err.exists() else ""
        lines.append(f"  last run's stderr tail:\n{tail}")
        return "\n".join(lines)

    @contextmanager
    def reporting(self) -> Iterator[None]:
        """Print the summary if anything in the block fails (pytest shows it), stop writers."""
        try:
            yield
        except BaseException:
            print(self.summary())
            raise
        finally:
            for w in self.writers:
                if w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait(timeout=10)
