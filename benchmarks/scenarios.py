"""What is benchmarked: each scenario's approaches, side by side in one run.

Every approach gets a fresh copy of the same table and the same workload.

* ``pgonline``: our command (``online add-column`` run in-process with a
  ``RunContext``; the other commands through the ``online`` CLI in a
  subprocess, so the harness never depends on their Python signatures).
* ``naive``: the one statement a developer would type.
* ``seed``: the approach of the project's seed migration guide
  (``docs``: "Handle Large Tables Carefully" / "Zero-Downtime Migrations"):
  add the column nullable, fill it with its ``DO`` block batch loop — which,
  being one ``DO`` statement, is ONE transaction — then ``SET NOT NULL`` and
  ``SET DEFAULT``; ``CREATE INDEX CONCURRENTLY`` for indexes.
* ``single-update``: one ``UPDATE`` of the whole table, the throughput
  reference for the staged backfill (the column is added before the window).
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psycopg
from probes import APP_NAIVE, APP_SEED
from psycopg import sql

from pgonline.connection import SessionSettings
from pgonline.engine.backfill import BatchOptions
from pgonline.engine.change import RunContext
from pgonline.engine.executor import ExecOptions
from pgonline.engine.plan import Step
from pgonline.engine.progress import BackfillStats, Progress

TABLE = "users"
CPU_FLOOR = "cpu-floor"
BUSY_LOOP = "busy-loop"  # the cpu-floor approach whose p99 is the target
SCAN_LOOP = "scan-loop"  # the cpu-floor approach that reads the table and nothing else


@dataclass(frozen=True)
class Env:
    """What an approach needs: the run's database and the engine settings."""

    dsn: str
    rows: int
    lock_timeout_ms: int
    batch: dict[str, int] = field(default_factory=dict)  # BatchOptions overrides

    def exec_options(self) -> ExecOptions:
        return ExecOptions(settings=SessionSettings(lock_timeout_ms=self.lock_timeout_ms),
                           batch=BatchOptions(**self.batch))

    def cli_options(self) -> list[str]:
        flags = {"initial_size": "--batch-size", "min_size": "--min-batch-size",
                 "max_size": "--max-batch-size", "target_ms": "--target-batch-ms",
                 "sleep_ms": "--sleep-ms", "statement_timeout_ms": "--batch-timeout"}
        out = ["--lock-timeout", str(self.lock_timeout_ms)]
        for key, value in self.batch.items():
            out += [flags[key], str(value)]
        return out


class ApproachFailed(Exception):
    """The migration itself failed (recorded in the results, the run goes on)."""


class NotAvailable(Exception):
    """The pgonline command does not exist (yet) in this checkout."""


@dataclass(frozen=True)
class Approach:
    name: str
    what: str
    run: Callable[[Env], dict[str, Any]]
    setup_sql: tuple[str, ...] = ()  # run before the workload starts, untimed
    cli_command: str | None = None  # pgonline subcommand this approach needs
    verify_sql: str | None = None  # instead of the scenario's check


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    verify_sql: str  # one bool: the change is in place afterwards
    approaches: tuple[Approach, ...]
    backfill: bool = False  # rows/s and the 1.5x single-UPDATE target apply


# --- pgonline ---------------------------------------------------------------


class RecordingProgress(Progress):
    """Progress without a bar or log lines: keeps step timings and backfill stats."""

    def __init__(self) -> None:
        super().__init__(bar=False)
        self.steps: list[dict[str, Any]] = []
        self.backfill_samples: list[dict[str, Any]] = []
        self.throttled: list[str] = []
        self._t: dict[str, float] = {}

    def job(self, job_id: int, kind: str, target: str, resumed: bool) -> None:
        pass

    def step_started(self, index: int, count: int, step: Step) -> None:
        self._t[step.id] = time.monotonic()

    def step_skipped(self, step: Step, why: str) -> None:
        self.steps.append({"id": step.id, "skipped": why})

    def step_finished(self, step: Step, seconds: float) -> None:
        self.steps.append({"id": step.id, "phase": str(step.phase), "lock": str(step.lock),
                           "seconds": round(seconds, 4),
                           "start": self._t.get(step.id), "end": time.monotonic()})

    def backfill(self, step: Step, stats: BackfillStats, *, force: bool = False) -> None:
        fields = stats.fields()
        self.backfill_samples.append({"t": time.monotonic(), "rows_done": stats.rows_done,
                                      "batch_size": stats.batch_size,
                                      "rows_per_s": round(stats.rate, 1),
                                      "batches": fields["batches"],
                                      "checkpoint_ms_per_batch":
                                          fields["checkpoint_ms_per_batch"]})

    def paused(self, step: Step, reason: str) -> None:
        self.throttled.append(reason)


def pgonline_add_column(column: str, type_: str, default: str) -> Callable[[Env], dict[str, Any]]:
    return pgonline_in_process("add-column", TABLE, column, type_, default=default,
                               not_null=True)


def pgonline_in_process(kind: str, *values: Any, **options: Any) -> Callable[[Env], dict[str, Any]]:
    """``online KIND VALUES --OPTIONS`` run inside the harness (``run_command``): the
    change without the start-up of an ``online`` process."""
    def run(env: Env) -> dict[str, Any]:
        from pgonline.engine.change import run_command
        from pgonline.errors import PgOnlineError

        progress = RecordingProgress()
        ctx = RunContext(dsn=env.dsn, options=env.exec_options(), progress=progress,
                         out=lambda _: None)
        try:
            outcome = anyio.run(functools.partial(run_command, ctx, kind, *values, **options))
        except PgOnlineError as exc:
            raise ApproachFailed(f"{type(exc).__name__}: {exc.message}") from exc
        assert outcome.result is not None
        batches = progress.backfill_samples
        return {"job_id": outcome.result.job_id, "status": str(outcome.result.status),
                "job_s": round(outcome.result.seconds, 3),
                "plan_steps": [s.id for s in outcome.plan.steps], "steps": progress.steps,
                "batch_sizes": sorted({b["batch_size"] for b in batches}),
                **_batch_costs(batches[-1] if batches else {}),
                "throttled": progress.throttled}
    return run


def _batch_costs(last: dict[str, Any]) -> dict[str, Any]:
    """Batches and checkpoint cost from the backfill's last progress report."""
    return {k: last[k] for k in ("batches", "checkpoint_ms_per_batch") if last.get(k) is not None}


def run_measured(cmd: Sequence[str], timeout_s: float) -> tuple[int, str, str, float, float]:
    """Run ``cmd``: its exit code, stdout, stderr, peak resident set size in MB and
    CPU seconds (user + system).

    The child is reaped with ``os.wait4``, whose rusage is that one process's
    own (``RUSAGE_CHILDREN`` would be the largest child the harness ever had).
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        killer = threading.Timer(timeout_s, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped: Popen must not wait
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read(), err.read(), usage.ru_maxrss / 1024,  # KB on Linux
                usage.ru_utime + usage.ru_stime)


def cli_available(command: str) -> str | None:
    """None if ``online COMMAND`` exists, else why not (checked in a subprocess)."""
    proc = subprocess.run([sys.executable, "-m", "pgonline", command, "--help"],
                          capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode == 0:
        return None
    tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["?"]
    return f"`online {command}` not available: {tail[0]}"


def pgonline_cli(argv: Sequence[str]) -> Callable[[Env], dict[str, Any]]:
    def run(env: Env) -> dict[str, Any]:
        cmd = [sys.executable, "-m", "pgonline", "--log-format", "json", *argv,
               "--dsn", env.dsn, *env.cli_options()]
        code, stdout, stderr, rss_mb, cpu_s = run_measured(cmd, timeout_s=3600)
        steps: list[dict[str, Any]] = []
        phases: dict[str, str] = {}
        batch_sizes: set[int] = set()
        last_progress: dict[str, Any] = {}
        for line in stderr.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "step started":
                phases[event.get("step")] = event.get("phase")
            elif event.get("event") == "step done":
                steps.append({"id": event.get("step"), "phase": phases.get(event.get("step")),
                              "seconds": event.get("seconds")})
            elif event.get("event") == "backfill progress" and event.get("batch_size"):
                batch_sizes.add(int(event["batch_size"]))
                last_progress = event
        if code != 0:
            raise ApproachFailed(f"exit {code}: {stderr.strip()[-500:]}")
        job = re.search(r"finished in ([0-9.]+)s", stdout)
        return {"argv": ["online", *argv], "stdout": stdout.strip()[-300:], "steps": steps,
                "job_s": float(job.group(1)) if job else None,
                "batch_sizes": sorted(batch_sizes), "peak_rss_mb": round(rss_mb, 1),
                "cpu_s": round(cpu_s, 2),
                **_batch_costs(last_progress)}
    return run


# --- naive and seed ---------------------------------------------------------


def run_sql(app: str, statements: Sequence[tuple[str, str]]) -> Callable[[Env], dict[str, Any]]:
    """Run statements in one plain session (autocommit, no lock_timeout), timing each."""
    def run(env: Env) -> dict[str, Any]:
        steps = []
        with psycopg.connect(env.dsn, autocommit=True, application_name=app) as conn:
            for label, stmt in statements:
                t = time.monotonic()
                try:
                    conn.execute(stmt.encode())
                except psycopg.Error as exc:
                    raise ApproachFailed(f"{label}: {exc.sqlstate}: {exc}".strip()) from exc
                steps.append({"id": label, "seconds": round(time.monotonic() - t, 4),
                              "start": t, "end": time.monotonic()})
        return {"steps": steps}
    return run


def seed_do_block(column: str, value: str) -> str:
    """The seed guide's batch loop, verbatim but for table/column/value.

    A ``DO`` block is one statement, hence one transaction: every row it
    updates stays locked until the very end, and nothing is visible (or
    committed) before then.  ``WHERE col IS NULL LIMIT n`` has no index to
    use, so each iteration re-scans the rows already updated.
    """
    # Only harness constants are interpolated here, never outside input.
    return f"""
DO $$
DECLARE
    batch_size INTEGER := 10000;
    updated INTEGER := 1;
BEGIN
    WHILE updated > 0 LOOP
        WITH batch AS (
            SELECT id FROM {TABLE}
            WHERE {column} IS NULL
            LIMIT batch_size
        )
        UPDATE {TABLE}
        SET {column} = {value}
        FROM batch
        WHERE {TABLE}.id = batch.id;

        GET DIAGNOSTICS updated = ROW_COUNT;
        RAISE NOTICE 'Updated % rows', updated;
        PERFORM pg_sleep(0.1);  -- Small delay to avoid overload
    END LOOP;
END $$"""  # noqa: S608


def seed_add_column(column: str, type_: str, value: str) -> Callable[[Env], dict[str, Any]]:
    return run_sql(APP_SEED, [
        ("add-nullable", f"ALTER TABLE {TABLE} ADD COLUMN {column} {type_}"),
        ("do-block-backfill", seed_do_block(column, value)),
        ("set-not-null", f"ALTER TABLE {TABLE} ALTER COLUMN {column} SET NOT NULL"),
        ("set-default", f"ALTER TABLE {TABLE} ALTER COLUMN {column} SET DEFAULT {value}"),
    ])


def _column_is(column: str, cond: str) -> str:
    # Only harness constants are interpolated here, never outside input.
    query = "SELECT coalesce((SELECT {} FROM pg_attribute WHERE attrelid = '{}'::regclass " \
            "AND attname = '{}' AND NOT attisdropped), false)"
    return query.format(cond, TABLE, column)


# A busy loop at SCHED_IDLE, the lowest CPU priority Linux has: every other
# runnable thread preempts it at once.  It does no I/O and takes no lock, so
# the latency the application sees while it runs is the machine's floor for
# "one core is busy", whatever keeps it busy.
_BUSY_LOOP = """
import os, sys, time
if sys.argv[2] == "1":
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
end = time.monotonic() + float(sys.argv[1])
on, off = float(sys.argv[3]) / 1000, float(sys.argv[4]) / 1000
while time.monotonic() < end:
    if not off:
        continue
    busy_until = time.monotonic() + on
    while time.monotonic() < busy_until:
        pass
    time.sleep(off)
"""


def busy_core(seconds: float, *, idle: bool = True,
              duty_ms: tuple[float, float] | None = None) -> Callable[[Env], dict[str, Any]]:
    """One core busy for ``seconds``: at SCHED_IDLE, or (``idle=False``) at the normal
    priority of every other process, as a migration's own client or server process is.
    ``duty_ms=(on, off)``: busy for ``on`` ms, then asleep for ``off`` ms, over and over,
    as a process that works in short bursts (a batch, a round trip) is."""
    on, off = duty_ms or (0.0, 0.0)
    def run(env: Env) -> dict[str, Any]:
        t = time.monotonic()
        subprocess.run([sys.executable, "-c", _BUSY_LOOP, str(seconds), str(int(idle)),
                        str(on), str(off)], check=True)
        return {"steps": [{"id": "busy-loop", "seconds": round(time.monotonic() - t, 4)}]}
    return run


def scan_loop(seconds: float) -> Callable[[Env], dict[str, Any]]:
    """Read the table and nothing else, for ``seconds``: one session running
    ``SELECT count(*) FROM users WHERE email IS NULL`` back to back.  It writes nothing
    and takes only ACCESS SHARE, which no application statement waits for, so it is the
    least database work a migration of the table can do (every change here reads the
    whole table at least once: a backfill, an index build, a VALIDATE)."""
    query = sql.SQL("SELECT count(*) FROM {} WHERE email IS NULL").format(
        sql.Identifier(TABLE))
    def run(env: Env) -> dict[str, Any]:
        t = time.monotonic()
        scans = 0
        with psycopg.connect(env.dsn, autocommit=True, application_name=APP_NAIVE) as conn:
            while time.monotonic() - t < seconds:
                conn.execute(query).fetchone()
                scans += 1
        return {"steps": [{"id": f"scan x{scans}", "seconds": round(time.monotonic() - t, 4)}]}
    return run


def scenarios() -> list[Scenario]:
    return [
        Scenario(
            name=CPU_FLOOR,
            title="no migration: one core busy for 5 s, at the lowest CPU priority "
                  "(SCHED_IDLE), at the normal one, and in 10 ms bursts; and the table "
                  "read back to back for 5 s",
            verify_sql="SELECT true",
            approaches=(
                Approach("idle-busy-loop", "a Python busy loop at SCHED_IDLE (no SQL at all)",
                         busy_core(5.0)),
                Approach(BUSY_LOOP, "a Python busy loop at normal priority (no SQL at all): "
                         "the p99 target of every migration",
                         busy_core(5.0, idle=False)),
                Approach("duty-loop", "the same loop, busy 10 ms then asleep 10 ms, over and "
                         "over (no SQL at all)",
                         busy_core(5.0, idle=False, duty_ms=(10, 10))),
                Approach(SCAN_LOOP, "SELECT count(*) FROM users WHERE email IS NULL, back to "
                         "back in one session (reads only, ACCESS SHARE)",
                         scan_loop(5.0)),
            ),
        ),
        Scenario(
            name="add-column-fast",
            title="ADD COLUMN verified boolean NOT NULL DEFAULT false (constant default)",
            verify_sql=_column_is("verified", "attnotnull"),
            approaches=(
                Approach("pgonline", "add_column(..., default='false', not_null=True)",
                         pgonline_add_column("verified", "boolean", "false")),
                Approach("naive", "ALTER TABLE ADD COLUMN ... NOT NULL DEFAULT false "
                         "(the seed's 'Bad' example)",
                         run_sql(APP_NAIVE, [("alter", "ALTER TABLE users ADD COLUMN verified "
                                              "boolean NOT NULL DEFAULT false")])),
                Approach("seed", "nullable ADD COLUMN + DO-block loop + SET NOT NULL + SET DEFAULT",
                         seed_add_column("verified", "boolean", "false")),
            ),
        ),
        Scenario(
            name="add-column-staged",
            title="ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid() (volatile default)",
            verify_sql=_column_is("token", "attnotnull"),
            backfill=True,
            approaches=(
                Approach("pgonline", "add_column(..., default='gen_random_uuid()', not_null=True)",
                         pgonline_add_column("token", "uuid", "gen_random_uuid()")),
                Approach("naive", "ALTER TABLE ADD COLUMN ... NOT NULL DEFAULT gen_random_uuid()",
                         run_sql(APP_NAIVE, [("alter", "ALTER TABLE users ADD COLUMN token "
                                              "uuid NOT NULL DEFAULT gen_random_uuid()")])),
                Approach("seed", "nullable ADD COLUMN + DO-block loop + SET NOT NULL + SET DEFAULT",
                         seed_add_column("token", "uuid", "gen_random_uuid()")),
                Approach("single-update", "UPDATE users SET token = gen_random_uuid() "
                         "(column added before the window)",
                         run_sql(APP_NAIVE, [("update",
                                              "UPDATE users SET token = gen_random_uuid()")]),
                         setup_sql=("ALTER TABLE users ADD COLUMN token uuid",),
                         verify_sql="SELECT NOT EXISTS (SELECT FROM users WHERE token IS NULL)"),
            ),
        ),
        Scenario(
            name="add-index",
            title="index on users(email)",
            verify_sql=("SELECT EXISTS (SELECT FROM pg_index WHERE indrelid = 'users'::regclass "
                        "AND indisvalid AND indkey::text = (SELECT attnum::text FROM pg_attribute "
                        "WHERE attrelid = 'users'::regclass AND attname = 'email'))"),
            approaches=(
                Approach("pgonline", "online add-index users email",
                         pgonline_cli(["add-index", TABLE, "email"]), cli_command="add-index"),
                Approach("naive", "CREATE INDEX",
                         run_sql(APP_NAIVE, [("create-index", "CREATE INDEX users_email_idx "
                                              "ON users (email)")])),
                Approach("seed", "CREATE INDEX CONCURRENTLY IF NOT EXISTS (seed rule 3)",
                         run_sql(APP_SEED, [("create-index-concurrently",
                                             "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                                             "users_email_idx ON users (email)")])),
            ),
        ),
        Scenario(
            name="set-not-null",
            title="email SET NOT NULL (no NULLs present)",
            verify_sql=_column_is("email", "attnotnull"),
            approaches=(
                Approach("pgonline", "online set-not-null users email",
                         pgonline_cli(["set-not-null", TABLE, "email"]),
                         cli_command="set-not-null"),
                Approach("naive", "ALTER COLUMN SET NOT NULL (also the seed's step 4)",
                         run_sql(APP_NAIVE, [("set-not-null", "ALTER TABLE users ALTER COLUMN "
                                              "email SET NOT NULL")])),
            ),
        ),
        Scenario(
            name="backfill-workers",
            title="online backfill users --set 'score = hits' with 1, 2 and 4 workers "
                  "(--workers), against the single UPDATE",
            verify_sql="SELECT NOT EXISTS (SELECT FROM users WHERE score > hits)",
            backfill=True,
            approaches=(
                *(Approach(f"workers-{n}", f"online backfill users --set 'score = hits' "
                           f"--workers {n}",
                           pgonline_cli(["backfill", TABLE, "--set", "score = hits",
                                         "--workers", str(n)]), cli_command="backfill")
                  for n in (1, 2, 4)),
                Approach("single-update", "UPDATE users SET score = hits",
                         run_sql(APP_NAIVE, [("update", "UPDATE users SET score = hits")])),
            ),
        ),
        Scenario(
            name="change-type",
            title="score int -> bigint",
            verify_sql=_column_is("score", "atttypid = 'bigint'::regtype"),
            backfill=True,
            approaches=(
                Approach("pgonline", "online change-type users score bigint",
                         pgonline_cli(["change-type", TABLE, "score", "bigint"]),
                         cli_command="change-type"),
                Approach("naive", "ALTER COLUMN TYPE bigint",
                         run_sql(APP_NAIVE, [("alter-type", "ALTER TABLE users ALTER COLUMN "
                                              "score TYPE bigint")])),
                # What the shadow column's backfill does, in one statement.
                Approach("single-update", "UPDATE users SET score_new = score "
                         "(bigint column added before the window)",
                         run_sql(APP_NAIVE, [("update", "UPDATE users SET score_new = score")]),
                         setup_sql=("ALTER TABLE users ADD COLUMN score_new bigint",),
                         verify_sql="SELECT NOT EXISTS (SELECT FROM users "
                                    "WHERE score_new IS DISTINCT FROM score)"),
            ),
        ),
    ]


def growth_scenarios() -> list[Scenario]:
    """The changes whose cost grows with the table (benchmarks/growth.py), each beside the
    single ``UPDATE`` that does its backfill's work in one statement.

    pgonline runs as the ``online`` CLI in a subprocess here, so that its own
    peak RSS is measured (``run_measured``).
    """
    by_name = {s.name: s for s in scenarios()}
    staged, change, workers = (by_name["add-column-staged"], by_name["change-type"],
                               by_name["backfill-workers"])
    return [
        Scenario(
            name=staged.name, title=staged.title, verify_sql=staged.verify_sql, backfill=True,
            approaches=(
                Approach("pgonline", "online add-column users token uuid "
                         "--default 'gen_random_uuid()' --not-null",
                         pgonline_cli(["add-column", TABLE, "token", "uuid", "--default",
                                       "gen_random_uuid()", "--not-null"]),
                         cli_command="add-column"),
                *(a for a in staged.approaches if a.name == "single-update"),
            ),
        ),
        Scenario(
            name=change.name, title=change.title, verify_sql=change.verify_sql, backfill=True,
            approaches=tuple(a for a in change.approaches if a.name != "naive"),
        ),
        workers,
    ]
