"""Targets, the markdown table and the latency chart of a benchmark result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from metrics import check_targets
from scenarios import BUSY_LOOP, CPU_FLOOR, SCAN_LOOP

APPROACH_COLORS = {"pgonline": "tab:green", "naive": "tab:red", "seed": "tab:orange",
                   "single-update": "tab:purple", "none": "tab:gray",
                   "idle-busy-loop": "tab:blue", BUSY_LOOP: "tab:cyan",
                   "duty-loop": "tab:olive", SCAN_LOOP: "tab:brown"}


def _baseline(result: dict[str, Any]) -> dict[str, Any] | None:
    return next((r for r in result["records"] if r["scenario"] == "baseline"), None)


def references(result: dict[str, Any]) -> dict[str, Any]:
    """The same run's reference numbers the targets are measured against."""
    base = _baseline(result)
    def floor(approach: str) -> float | None:
        rec = next((r for r in result["records"] if r["scenario"] == CPU_FLOOR
                    and r["approach"] == approach and r.get("status") == "ok"), None)
        return rec["workload"]["during"]["p99_ms"] if rec else None

    return {
        "baseline_p99_ms": base["workload"]["whole"]["p99_ms"] if base and "workload" in base
        else None,
        "baseline_server_p99_ms": base.get("server", {}).get("whole", {}).get("p99_ms")
        if base else None,
        "busy_loop_p99_ms": floor(BUSY_LOOP),
        # Not a target: what reading the table, and nothing else, costs the application.
        "scan_loop_p99_ms": floor(SCAN_LOOP),
    }


def finish(result: dict[str, Any]) -> None:
    """Check the targets of every record of this run (merged older records keep theirs)."""
    ref = references(result)
    result["references"] = ref
    single = {r["scenario"]: r.get("duration_s") for r in result["records"]
              if r["approach"] == "single-update" and r.get("status") == "ok"}
    for rec in result["records"]:
        if rec["scenario"] == "baseline" or "targets" in rec:
            continue
        rec["baseline_p99_ms"] = ref["baseline_p99_ms"]
        if ref["baseline_p99_ms"]:
            rec["p99_vs_baseline"] = round(rec.get("workload", {}).get("during", {}).get(
                "p99_ms", 0.0) / ref["baseline_p99_ms"], 2)
        if ref.get("scan_loop_p99_ms") and rec["scenario"] != CPU_FLOOR:
            rec["p99_vs_scan_loop"] = round(rec.get("workload", {}).get("during", {}).get(
                "p99_ms", 0.0) / ref["scan_loop_p99_ms"], 2)
        rec["targets"] = check_targets(rec, ref, result["parameters"]["lock_timeout_ms"],
                                       single.get(rec["scenario"]))
        rec["targets_met"] = bool(rec["targets"]) and all(t["ok"] for t in rec["targets"].values())


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New records replace old ones of the same scenario; others are kept as they were."""
    if old.get("parameters", {}).get("rows") != new["parameters"]["rows"]:
        return new
    rerun = {r["scenario"] for r in new["records"] if r["scenario"] != "baseline"}
    kept = [r for r in old["records"] if r["scenario"] not in rerun and r["scenario"] != "baseline"]
    for r in kept:
        r.setdefault("from_run", old.get("started_at"))
    merged = dict(new)
    order = [r["scenario"] for r in old["records"]]
    merged["records"] = sorted(
        [r for r in new["records"] if r["scenario"] == "baseline"] + kept +
        [r for r in new["records"] if r["scenario"] != "baseline"],
        key=lambda r: order.index(r["scenario"]) if r["scenario"] in order else len(order))
    merged["merged_from"] = old.get("started_at")
    return merged


def _ok(rec: dict[str, Any], key: str) -> str:
    t = rec.get("targets", {}).get(key)
    if t is None:
        return "-"
    return "✅" if t["ok"] else "❌"


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _hold(rec: dict[str, Any], poll_ms: float, label: str = "hold") -> str:
    locks = rec.get("locks", {})
    ms = locks.get(f"longest_{label}_ms")
    if ms is None:
        return "-"
    # Never seen by a poll: the hold (if any) was shorter than one poll interval.
    if ms == 0:
        return f"<{poll_ms:g} (not seen)"
    mode = locks.get(f"longest_{label}_mode") or ""
    short = mode.removesuffix("Lock")
    return _f(ms) + (f" ({short})" if label != "hold" and short else "")


def _targets_summary(result: dict[str, Any]) -> list[str]:
    """What the targets were in this run, and how many pgonline approaches met them all."""
    ref = result.get("references", {})
    p = result["parameters"]
    if not ref.get("busy_loop_p99_ms"):
        return []
    ours = [r for r in result["records"] if r["approach"].startswith(("pgonline", "workers-"))
            and r.get("targets")]
    met = [r for r in ours if r.get("targets_met")]
    rate = p.get("server_sample_rate")
    srv = (f"server-side p99 ≤ 1.5x the baseline's {ref['baseline_server_p99_ms']} ms = "
           f"{1.5 * ref['baseline_server_p99_ms']:.3f} ms (PostgreSQL logs a random "
           f"{rate:.0%} of the application's statements with their duration)"
           if ref.get("baseline_server_p99_ms") else "no server-side numbers in this run")
    return [f"**Targets** (references from this run): client p99 during the migration ≤ the "
            f"normal-priority busy loop's {ref['busy_loop_p99_ms']} ms; {srv}; 0 errors; no "
            f"ACCESS EXCLUSIVE hold longer than lock_timeout + 50 ms = "
            f"{p['lock_timeout_ms'] + 50} ms. pgonline approaches meeting all of them: "
            f"{len(met)} of {len(ours)}"
            + (" (not: " + ", ".join(f"{r['scenario']}/{r['approach']}: " + ", ".join(
                k for k, t in r["targets"].items() if not t["ok"]) for r in ours
                if not r.get("targets_met")) + ")" if len(met) < len(ours) else "") + ".", "",
            *_scan_loop_line(ref, ours)]


def _scan_loop_line(ref: dict[str, Any], ours: list[dict[str, Any]]) -> list[str]:
    """The read-only scan loop beside the targets: a reference, not a target."""
    scan = ref.get("scan_loop_p99_ms")
    if not scan:
        return []
    below = [r for r in ours if r.get("p99_vs_scan_loop") is not None
             and r["p99_vs_scan_loop"] <= 1]
    return [f"**Reference, not a target:** the table read back to back (`{SCAN_LOOP}`: "
            f"one session, `count(*)` scans, no write, no lock anyone waits for) cost the "
            f"application a p99 of {scan} ms. pgonline approaches at or below it: "
            f"{len(below)} of {len(ours)}.", ""]


def markdown(result: dict[str, Any]) -> str:
    p, m, pg = result["parameters"], result["machine"], result["postgres"]
    base = _baseline(result)
    lines = [
        "# pgonline benchmark results",
        "",
        f"Run {result['started_at']} -> {result['finished_at']}"
        + (f" (merged with run {result['merged_from']})" if result.get("merged_from") else ""),
        "",
        f"* Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['memory']}, {m['platform']}; "
        f"load average before {m['loadavg_before']}, after {m['loadavg_after']}.",
        f"* PostgreSQL: {pg['version']} ({pg['source']}); shared_buffers={pg.get('shared_buffers')},"
        f" max_wal_size={pg.get('max_wal_size')}, fsync={pg.get('fsync')} (scratch server).",
        f"* Table: users, {p['rows']:,} rows (id bigserial pk, email, hits, created_at, score int);"
        f" fresh copy per approach.",
        f"* Workload: {p['clients']} clients x {p['rate_per_client']:g} ops/s (50 % reads by id, "
        f"50 % `hits = hits + 1`), {p['pre_s']:g} s before and {p['post_s']:g} s after each "
        f"migration; 'during' = statements overlapping [start, end + {p['settle_s']:g} s]. "
        "p99 is corrected for coordinated omission (a client stuck for L ms is counted as "
        "also having sent the statements it would have sent meanwhile); 'p99 raw' is not.",
        f"* Locks: pg_locks polled every {p['poll_ms']:g} ms; hold = conservative upper bound "
        f"(poll before first sighting -> poll after last). pgonline lock_timeout "
        f"{p['lock_timeout_ms']} ms; backfill overrides: {p['batch_overrides'] or 'engine defaults'}.",
    ]
    if p.get("repeat", 1) > 1:
        lines.append(f"* Repeats: the baseline and every approach ran {p['repeat']} times "
                     "(approaches interleaved, a fresh table copy each time); latency "
                     "percentiles are over the pooled statements of all runs, durations and "
                     "rows/s are medians, errors and lost updates are summed, lock holds are "
                     "the worst run's. Each run's p99 is listed under Details.")
    lines.append("")
    if m["cpus"] and m["cpus"] <= 4:
        lines += [
            "> **Caveat:** this machine has only "
            f"{m['cpus']} cores, shared with other jobs during the run (load average above). "
            "Absolute durations and tail latencies are noisy; compare approaches within a "
            "scenario (same run, same table), not across machines.",
            "",
        ]
    if base and "workload" in base:
        w = base["workload"]["whole"]
        srv = base.get("server", {}).get("whole")
        lines += [f"**Baseline** (no migration, {p['baseline_s']:g} s): p50 {w['p50_ms']} ms, "
                  f"p99 {w['p99_ms']} ms, max {w['max_ms']} ms, {w['n']} statements, "
                  f"{base['errors']['count']} errors"
                  + (f"; server-side p99 {srv['p99_ms']} ms, max {srv['max_ms']} ms" if srv else "")
                  + (f" (pooled over {len(base['runs']['p99_ms'])} runs, whose p99s were "
                     + " / ".join(_f(v) for v in base["runs"]["p99_ms"]) + " ms)"
                     if base.get("runs") else "")
                  + ".", ""]
    lines += _targets_summary(result)
    lines += [
        "| scenario | approach | status | duration s | backfill rows/s | p50 ms | p99 ms | "
        "p99 raw ms | p99 / baseline | p99 / scan loop | server p99 ms | max ms | errors | "
        "longest AccessExclusive ms | longest write-blocking lock ms | p99 ≤ busy loop | "
        "server p99 ≤ 1.5x | 0 errors | lock ≤ timeout+50 | backfill ≤ 1.5x UPDATE | "
        "lost updates |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|:-:|:-:|"
        ":-:|---:|",
    ]
    for r in result["records"]:
        if r["scenario"] == "baseline":
            continue
        if r.get("status") == "not available":
            lines.append(f"| {r['scenario']} | {r['approach']} | not available | "
                         + " | ".join(["-"] * 18) + " |")
            continue
        d = r.get("workload", {}).get("during", {})
        srv = r.get("server", {}).get("during", {})
        bf = r.get("targets", {}).get("backfill_within_1.5x_single_update")
        lines.append(
            f"| {r['scenario']} | {r['approach']} | {r['status']}"
            + ("" if r.get("verified", True) else " (not verified)")
            + f" | {_f(r.get('duration_s'), 2)} | {_f(r.get('rows_per_s'))} | "
            f"{_f(d.get('p50_ms'))} | {_f(d.get('p99_ms'))} | {_f(d.get('p99_raw_ms'))} | "
            + (f"{r['p99_vs_baseline']:.2f}x" if r.get("p99_vs_baseline") is not None else "-")
            + " | " + (f"{r['p99_vs_scan_loop']:.2f}x" if r.get("p99_vs_scan_loop") is not None
                       else "-")
            + f" | {_f(srv.get('p99_ms'), 2)} | "
            f"{_f(d.get('max_ms'))} | {_f(r.get('errors', {}).get('count'))} | "
            f"{_hold(r, p['poll_ms'])} | {_hold(r, p['poll_ms'], 'write_block')} | "
            f"{_ok(r, 'p99_within_busy_loop')} | {_ok(r, 'server_p99_within_1.5x_baseline')}"
            f" | {_ok(r, 'zero_workload_errors')} | "
            f"{_ok(r, 'lock_hold_within_lock_timeout_plus_50ms')} | "
            + (f"{_ok(r, 'backfill_within_1.5x_single_update')} ({bf['ratio']}x)" if bf else "-")
            + f" | {_f(r.get('integrity', {}).get('lost'))} |")
    lines += ["", "## Details", ""]
    for r in result["records"]:
        if r["scenario"] == "baseline":
            continue
        lines.append(f"* **{r['scenario']} / {r['approach']}** — {r['what']}")
        if r.get("error"):
            lines.append(f"  * {r['status']}: `{r['error'][:300]}`")
        steps = r.get("detail", {}).get("steps", [])
        if steps:
            lines.append("  * steps: " + ", ".join(
                f"{s['id']} {s['seconds']:.3f}s" if s.get("seconds") is not None else
                f"{s['id']} (skipped)" for s in steps))
        if r.get("detail", {}).get("job_s") is not None:
            lines.append(f"  * pgonline job time {r['detail']['job_s']:.2f}s (the duration column "
                         "also counts connecting, planning and, for CLI runs, Python start-up)")
        if r.get("detail", {}).get("batch_sizes"):
            sizes = r["detail"]["batch_sizes"]
            lines.append(f"  * backfill batch sizes seen: {sizes[0]}-{sizes[-1]}")
        if r.get("errors", {}).get("kinds"):
            lines.append("  * workload errors: " + "; ".join(
                f"{n}x `{k}`" for k, n in r["errors"]["kinds"].items()))
        if r.get("runs"):
            runs = r["runs"]
            lines.append("  * per run: p99 " + " / ".join(_f(v) for v in runs["p99_ms"]) + " ms; "
                         "duration " + " / ".join(_f(v, 2) for v in runs["duration_s"]) + " s"
                         + ("; backfill " + " / ".join(_f(v, 2) for v in runs["backfill_s"]) + " s"
                            if runs.get("backfill_s") else ""))
        if r.get("app_wait_events_during"):
            lines.append("  * application wait events during (samples): " + ", ".join(
                f"{k} {v}" for k, v in list(r["app_wait_events_during"].items())[:4]))
        if r.get("from_run"):
            lines.append(f"  * (from run {r['from_run']})")
    lines.append("")
    lines.append("Chart: `latency.png` (workload latency per 100 ms bucket, log scale; "
                 "migration start at 0, end marked per approach).")
    return "\n".join(lines) + "\n"


def _gapped(tl: list[list[float]]) -> tuple[list[float], list[float], list[float]]:
    """x, max, median per bucket; NaN where no statement was issued, so the line breaks
    instead of drawing a slope across a stall."""
    xs: list[float] = []
    highs: list[float] = []
    mids: list[float] = []
    prev: float | None = None
    for t, mid, high, _ in tl:
        if prev is not None and t - prev > 0.15:
            xs.append(prev + 0.1)
            highs.append(float("nan"))
            mids.append(float("nan"))
        xs.append(t)
        highs.append(max(high, 0.05))
        mids.append(max(mid, 0.05))
        prev = t
    return xs, highs, mids


def chart(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return None
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in result["records"]:
        if r.get("timeline"):
            groups.setdefault(r["scenario"], []).append(r)
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(11, 2.8 * len(groups)), squeeze=False)
    for ax, (scenario, recs) in zip(axes[:, 0], groups.items(), strict=True):
        for r in recs:
            color = APPROACH_COLORS.get(r["approach"], "tab:blue")
            tl = r["timeline"]
            xs, highs, mids = _gapped(tl)
            ax.plot(xs, highs, color=color, lw=0.9, marker=".", ms=2,
                    label=f"{r['approach']} (max/100 ms)")
            ax.plot(xs, mids, color=color, lw=0.6, ls=":", alpha=0.8)
            if r["scenario"] != "baseline":
                ax.axvline(r["migration_s"][1], color=color, ls="--", lw=0.8)
            if r.get("timeline_errors"):
                top = max((b[2] for b in tl), default=1.0)
                ax.scatter(r["timeline_errors"], [top] * len(r["timeline_errors"]), marker="x",
                           color=color, s=12)
        if scenario != "baseline":
            ax.axvline(0, color="black", lw=0.8)
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel("latency ms")
        ax.set_title(scenario + ("" if scenario == "baseline" else
                                 " — start at 0 (black), end dashed; dotted = median; "
                                 "gaps = clients stuck, no statement issued"),
                     fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(True, which="both", alpha=0.2)
    axes[-1, 0].set_xlabel("seconds since migration start")
    return save_figure(fig, f"pgonline benchmark, {result['parameters']['rows']:,} rows, "
                            f"{result['postgres']['version']}", path)


def save_figure(fig: Any, title: str, path: Path) -> Path:
    """Title, lay out, write and close a matplotlib figure."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
