"""The markdown table and the chart of a cost-growth run (growth.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from report import _f, save_figure

COLORS = {"add-column-staged": "tab:blue", "change-type": "tab:green",
          "backfill-workers": "tab:gray", "workers-1": "tab:purple", "workers-2": "tab:orange",
          "workers-4": "tab:red"}


def _series(result: dict[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Records per (scenario, approach), in size order; the baselines left out."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in result["records"]:
        if r["scenario"] != "baseline":
            out.setdefault((r["scenario"], r["approach"]), []).append(r)
    for recs in out.values():
        recs.sort(key=lambda r: r["rows"])
    return out


def _p99(r: dict[str, Any]) -> float | None:
    p99 = r.get("workload", {}).get("during", {}).get("p99_ms")
    return None if p99 is None else float(p99)


def _per_million(r: dict[str, Any]) -> float | None:
    d = r.get("duration_s")
    return d / (r["rows"] / 1e6) if d and r.get("rows") else None


def markdown(result: dict[str, Any]) -> str:
    p, m, pg = result["parameters"], result["machine"], result["postgres"]
    sizes = p["sizes"]
    lines = [
        "# pgonline cost growth",
        "",
        f"Run {result['started_at']} -> {result['finished_at']} ({result['wall_s'] / 60:.1f} "
        "minutes, template builds included)"
        + (f"; the scenarios not re-run are from the run of {result['merged_from']} "
           "(`from_run` in results.json)" if result.get("merged_from") else "") + ".",
        "",
        f"* Machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['memory']}; load average before "
        f"{m['loadavg_before']}, after {m['loadavg_after']}.",
        f"* PostgreSQL: {pg['version']} ({pg['source']}); shared_buffers="
        f"{pg.get('shared_buffers')}, max_wal_size={pg.get('max_wal_size')}, "
        f"fsync={pg.get('fsync')} (scratch server).",
        "* Table: users (id bigserial pk, email, hits, created_at, score int) at "
        + ", ".join(f"{s:,}" for s in sizes) + " rows; built in "
        + ", ".join(f"{v:g} s" for v in p["template_build_s"].values())
        + "; a fresh copy per run, each approach once per size.",
        f"* Workload during every run: {p['clients']} clients x {p['rate_per_client']:g} ops/s "
        "(reads by id and `hits = hits + 1`), as in results.md; p99 corrected for "
        "coordinated omission. pgonline lock_timeout "
        f"{p['lock_timeout_ms']} ms; backfill: {p['batch_overrides'] or 'engine defaults'}.",
        "* `backfill / UPDATE`: the backfill step's time over the single UPDATE's, same size, "
        "same run; `job / UPDATE`: the whole pgonline command's. Peak RSS and client CPU "
        "(user + system): the `online` process's own (wait4), not its server backends'. "
        "Journal rows: inserts + updates + deletes in the pgonline "
        "schema (pg_stat_user_tables). Checkpoint: the upsert each batch commits with "
        "its rows, timed by the engine.",
        "",
    ]
    base = {r["rows"]: r for r in result["records"] if r["scenario"] == "baseline"}
    if base:
        lines += ["Baseline p99 (no migration): " + ", ".join(
            f"{rows:,} rows {_f(b['workload']['whole']['p99_ms'], 2)} ms"
            for rows, b in sorted(base.items())) + ".", ""]
    lines += [
        "| scenario | approach | rows | duration s | s per 1M rows | backfill s | rows/s | "
        "backfill / UPDATE | job / UPDATE | contract s | vacuum s | peak RSS MB | client CPU s | "
        "journal rows | "
        "batches | checkpoint ms/batch | app p99 ms | errors | longest AccessExclusive ms | "
        "lost updates |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        "---:|---:|",
    ]
    for (scenario, approach), recs in _series(result).items():
        for r in recs:
            status = "" if r.get("status") == "ok" else f" ({r.get('status')})"
            lines.append(
                f"| {scenario} | {approach}{status} | {r['rows']:,} | "
                f"{_f(r.get('duration_s'), 2)} | {_f(_per_million(r), 2)} | "
                f"{_f(r.get('backfill_s'), 2)} | {_f(r.get('rows_per_s'))} | "
                f"{_f(r.get('backfill_vs_update'), 2)} | {_f(r.get('job_vs_update'), 2)} | "
                f"{_f(r.get('contract_s'), 3)} | {_f(r.get('vacuum_s'), 2)} | "
                f"{_f(r.get('peak_rss_mb'))} | {_f(r.get('cpu_s'), 2)} | "
                f"{_f(r.get('journal_rows'))} | "
                f"{_f(r.get('batches'))} | {_f(r.get('checkpoint_ms_per_batch'), 3)} | "
                f"{_f(_p99(r))} | {_f(r.get('errors', {}).get('count'))} | "
                f"{_f(r.get('locks', {}).get('longest_hold_ms'))} | "
                f"{_f(r.get('integrity', {}).get('lost'))} |")
    failed = [r for r in result["records"] if r.get("error")]
    if failed:
        lines += ["", "Failures:", ""] + [
            f"* {r['scenario']}/{r['approach']} at {r['rows']:,} rows: `{r['error'][:300]}`"
            for r in failed]
    lines += ["", "Chart: `growth.png` (duration and backfill rows/s against rows).", ""]
    return "\n".join(lines)


def chart(result: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = _series(result)
    if not series:
        return None
    fig, (ax_d, ax_r) = plt.subplots(1, 2, figsize=(12, 4.5))
    for (scenario, approach), recs in series.items():
        ok = [r for r in recs if r.get("status") == "ok"]
        # A scenario's single UPDATE dashed, in the colour of its pgonline line.
        style = "--" if approach == "single-update" else "-"
        color = COLORS.get(approach) or COLORS.get(scenario)
        label = f"{scenario} / {approach}"
        xs = [r["rows"] / 1e6 for r in ok]
        ax_d.plot(xs, [r["duration_s"] for r in ok], style, color=color, marker="o", ms=3,
                  label=label)
        with_rate = [r for r in ok if r.get("rows_per_s")]
        if with_rate:
            ax_r.plot([r["rows"] / 1e6 for r in with_rate],
                      [r["rows_per_s"] / 1000 for r in with_rate], style, color=color,
                      marker="o", ms=3, label=label)
    ax_d.set_xlabel("rows (millions)")
    ax_d.set_ylabel("duration s (whole command)")
    ax_d.set_title("duration against rows (dashed: the single UPDATE)", fontsize=9)
    ax_r.set_xlabel("rows (millions)")
    ax_r.set_ylabel("backfill rows/s (thousands)")
    ax_r.set_title("backfill throughput against rows", fontsize=9)
    for ax in (ax_d, ax_r):
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6.5)
    return save_figure(fig, f"pgonline cost growth, {result['postgres']['version']}, "
                            f"{result['machine']['cpus']} CPUs", path)
