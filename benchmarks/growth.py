"""pgonline cost growth: the same changes at several table sizes, in one run.

    python benchmarks/growth.py [--sizes 1000000,4000000,10000000] [--pgbin DIR]
                                [--out benchmarks/results/growth] [run.py options]

For each size it builds the ``users`` table (as run.py does), then runs every
approach of the staged add-column, the change-type and the backfill with
``--workers 1, 2, 4`` once, each beside the single ``UPDATE`` doing the same
work on the same size, under the same application workload.  Recorded per
run: duration, backfill rows/s and the ratio to the single UPDATE, pgonline's
peak RSS, the rows its journal wrote and what a checkpoint cost per batch,
the contract steps' and the VACUUM step's time, the application's p99 and
errors.  Results: ``results.json``, ``results.md`` and ``growth.png`` in
``--out``.  See docs/benchmarks.md, "Cost growth".
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import growth_report
import metrics
import run
from scenarios import growth_scenarios

from pgonline.devtools.local_server import start_embedded, start_from_bindir

DEFAULT_SIZES = "1000000,4000000,10000000"


def drop_template(dsn: str) -> None:
    """Drop the previous size's table copy: a 10M-row template is a gigabyte of disk."""
    ident = sql.Identifier(run.TEMPLATE_DB)
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT FROM pg_database WHERE datname = %s",
                        [run.TEMPLATE_DB]).fetchone() is None:
            return
        conn.execute(sql.SQL("ALTER DATABASE {} WITH IS_TEMPLATE false").format(ident))
        conn.execute(sql.SQL("DROP DATABASE {}").format(ident))


def step_seconds(rec: dict[str, Any], *, phase: str | None = None,
                 step: str | None = None) -> float | None:
    """Total seconds of the run's steps of ``phase`` (or the one step ``step``)."""
    steps = [s for s in rec.get("detail", {}).get("steps", [])
             if s.get("seconds") is not None
             and (phase is None or s.get("phase") == phase) and (step is None or s["id"] == step)]
    return round(sum(float(s["seconds"]) for s in steps), 3) if steps else None


def summarize(rec: dict[str, Any], rows: int, single_update: dict[str, Any] | None) -> None:
    """The growth numbers of one run, next to its record's own."""
    detail = rec.get("detail", {})
    rec["rows"] = rows
    rec["contract_s"] = step_seconds(rec, phase="contract")
    rec["vacuum_s"] = step_seconds(rec, step="vacuum")
    for key in ("peak_rss_mb", "cpu_s", "batches", "checkpoint_ms_per_batch"):
        if detail.get(key) is not None:
            rec[key] = detail[key]
    journal = rec.get("journal", {}).get("rows_written")
    if journal:
        rec["journal_rows"] = journal
    single = single_update.get("duration_s") if single_update else None
    if single and rec["approach"] != "single-update":
        if rec.get("backfill_s") is not None:
            rec["backfill_vs_update"] = round(rec["backfill_s"] / single, 2)
        rec["job_vs_update"] = round(rec["duration_s"] / single, 2)


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new``, plus the records of ``old``'s other scenarios (marked with their run)."""
    rerun = {r["scenario"] for r in new["records"]}
    kept = [{**r, "from_run": r.get("from_run", old["started_at"])} for r in old["records"]
            if r["scenario"] not in rerun]
    order = [r["scenario"] for r in old["records"]]
    records = sorted(kept + new["records"], key=lambda r: (
        order.index(r["scenario"]) if r["scenario"] in order else len(order), r["rows"]))
    return {**new, "records": records, "merged_from": old["started_at"],
            "parameters": {**new["parameters"],
                           "sizes": sorted({r["rows"] for r in records})}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sizes", default=DEFAULT_SIZES, help="comma-separated row counts")
    p.add_argument("--replot", action="store_true",
                   help="only rewrite results.md and growth.png from results.json in --out")
    p.add_argument("--merge", action="store_true",
                   help="keep the other scenarios' records of an earlier results.json in --out "
                        "(re-run one scenario after a change to it)")
    mine, rest = p.parse_known_args(argv)
    args = run.parse_args(["--repeat", "1", "--pre", "1", "--post", "1", "--baseline", "5",
                           *rest])
    if args.out == run.RESULTS_DIR:  # run.py's default, not one given with --out
        args.out = run.RESULTS_DIR / "growth"
    out: Path = args.out
    if mine.replot:
        result = json.loads((out / "results.json").read_text())
        (out / "results.md").write_text(growth_report.markdown(result))
        growth_report.chart(result, out / "growth.png")
        return 0
    sizes = [int(s.replace("_", "")) for s in mine.sizes.split(",") if s.strip()]
    run.byte_compile()
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    t_run = time.monotonic()
    run.log(f"starting scratch server ({args.pgbin or 'embedded'})")
    server = start_from_bindir(args.pgbin) if args.pgbin else start_embedded()
    records: list[dict[str, Any]] = []
    builds: dict[int, float] = {}
    try:
        major = run.server_major(server.dsn)
        server_log = (run.prepare_server_log(server, major) if args.server_sample_rate > 0
                      else None)
        n = 0
        for rows in sizes:
            drop_template(server.dsn)
            args.rows = rows
            run.log(f"{server.version}; building the {rows:,}-row template")
            builds[rows] = round(run.build_template(server, rows), 1)
            run.log(f"template ready in {builds[rows]:.1f}s")
            base = run.one_run(server, major, args, n, None, None, server_log)
            base["rows"] = rows
            records.append(base)
            n += 1
            for scenario in growth_scenarios():
                if scenario.name not in args.selected:
                    continue
                done: list[dict[str, Any]] = []
                for approach in scenario.approaches:
                    if args.only and approach.name not in args.only:
                        continue
                    done.append(run.one_run(server, major, args, n, scenario, approach,
                                            server_log))
                    n += 1
                single = next((r for r in done if r["approach"] == "single-update"
                               and r["status"] == "ok"), None)
                for rec in done:
                    summarize(rec, rows, single)
                    rec["baseline_p99_ms"] = base["workload"]["whole"]["p99_ms"]
                records.extend(done)
        info = run.server_info(server.dsn)
    finally:
        server.stop()
    result = {
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - t_run, 1),
        **run.environment(load_before, server, args.pgbin, info),
        "parameters": {"sizes": sizes, "clients": args.clients, "rate_per_client": args.rate,
                       "pre_s": args.pre, "post_s": args.post, "baseline_s": args.baseline,
                       "poll_ms": args.poll_ms, "lock_timeout_ms": args.lock_timeout,
                       "server_sample_rate": args.server_sample_rate,
                       "batch_overrides": args.batch, "template_build_s": builds},
        "records": metrics.strip_private(records),
    }
    for rec in result["records"]:
        for key in ("timeline", "timeline_errors"):  # the latency chart is run.py's
            rec.pop(key, None)
    if mine.merge and (out / "results.json").exists():
        result = merge(json.loads((out / "results.json").read_text()), result)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "results.md").write_text(growth_report.markdown(result))
    chart = growth_report.chart(result, out / "growth.png")
    run.log(f"wrote {out / 'results.json'}, {out / 'results.md'}"
            + (f", {chart}" if chart else " (no chart: pip install -e '.[bench]')")
            + f" in {result['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
