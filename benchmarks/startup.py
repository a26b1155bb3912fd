"""Start-up and lint speed: `online --version`, `online lint --help`, and linting 1,500 files
next to squawk, in the same run (issue #11, item 7).

    python benchmarks/startup.py [--runs 15] [--files 1500] [--squawk PATH]

Targets: `online --version` and `online lint --help` take at most 150 ms (median
wall time of ``--runs`` runs); linting ``--files`` migration files takes at most
twice squawk's time on the same files.  Results: benchmarks/results/startup.json
and startup.md.  Nothing here is a test assertion: the targets are recorded.
squawk is found via --squawk, $SQUAWK, PATH or /tmp/squawkvenv/bin/squawk
(``pip install squawk-cli``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
ONLINE = [sys.executable, "-m", "pgonline"]
STARTUP_TARGET_S = 0.150
LINT_RATIO_TARGET = 2.0


def _median_s(cmd: list[str], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def _write_files(directory: Path, count: int) -> None:
    """``count`` seed-style migration files of our own: the kinds of statements lint judges."""
    kinds = [
        "CREATE TABLE t{n} (id bigserial PRIMARY KEY, a int, b text);\n",
        "ALTER TABLE t{m} ADD COLUMN c{n} int DEFAULT 0;\n",
        "CREATE INDEX i{n} ON t{m} (a);\n",
        "ALTER TABLE t{m} ALTER COLUMN a SET NOT NULL;\n",
        "ALTER TABLE t{m} ADD CONSTRAINT k{n} CHECK (a > 0);\n",
        "CREATE OR REPLACE FUNCTION f{n}() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;\n",
        "CREATE VIEW v{n} AS SELECT id FROM t{m} WHERE a > {n};\n",
        "SET lock_timeout = '2s';\nALTER TABLE t{m} ADD COLUMN d{n} text;\n",
    ]
    for n in range(1, count + 1):
        m = max(1, n - (n % 8))
        text = kinds[n % len(kinds)].format(n=n, m=m)
        (directory / f"{n:04d}_step_{n}.sql").write_text(text)


def _squawk(given: str | None) -> str | None:
    for candidate in (given, os.environ.get("SQUAWK"), shutil.which("squawk"),
                      "/tmp/squawkvenv/bin/squawk"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def _version(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--files", type=int, default=1500)
    p.add_argument("--squawk", default=None)
    args = p.parse_args()

    records: list[dict[str, Any]] = []
    for label, cmd in (("online --version", [*ONLINE, "--version"]),
                       ("online lint --help", [*ONLINE, "lint", "--help"])):
        median, times = _median_s(cmd, args.runs)
        records.append({"measure": label, "median_s": round(median, 4),
                        "runs_s": [round(t, 4) for t in times], "target_s": STARTUP_TARGET_S,
                        "met": median <= STARTUP_TARGET_S})
    python_only, _ = _median_s([sys.executable, "-c", "pass"], args.runs)

    squawk = _squawk(args.squawk)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _write_files(d, args.files)
        files = sorted(str(f) for f in d.iterdir())
        lint_runs = max(3, args.runs // 5)
        ours, ours_runs = _median_s([*ONLINE, "lint", str(d), "--format", "json",
                                     "--fail-on", "error"], lint_runs)
        lint: dict[str, Any] = {"measure": f"lint {args.files} files", "online_s": round(ours, 3),
                                "online_runs_s": [round(t, 3) for t in ours_runs]}
        if squawk is not None:
            theirs, theirs_runs = _median_s([squawk, *files], lint_runs)
            lint.update(squawk=_version([squawk, "--version"]), squawk_s=round(theirs, 3),
                        squawk_runs_s=[round(t, 3) for t in theirs_runs],
                        ratio=round(ours / theirs, 2), target_ratio=LINT_RATIO_TARGET,
                        met=ours / theirs <= LINT_RATIO_TARGET)
        else:
            lint.update(squawk=None, met=None, note="squawk not found: ratio not measured")
    load = os.getloadavg()
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in load]},
        "python_startup_s": round(python_only, 4),
        "startup": records, "lint": lint,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "startup.md").write_text(_markdown(result))
    print(_markdown(result))


def _markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# Start-up and lint speed (benchmarks/startup.py)", "",
             f"* Machine: {m['platform']}, Python {m['python']}, {m['cpus']} CPUs, load average "
             f"{m['load_average']} when the run ended.",
             f"* A bare `python -c pass` takes {r['python_startup_s'] * 1000:.0f} ms here "
             "(the floor of any command).", "",
             "| measure | median | target | met |", "| --- | --- | --- | --- |"]
    for rec in r["startup"]:
        lines.append(f"| `{rec['measure']}` | {rec['median_s'] * 1000:.0f} ms | "
                     f"≤ {rec['target_s'] * 1000:.0f} ms | {'yes' if rec['met'] else 'no'} |")
    lint = r["lint"]
    if lint.get("squawk_s") is not None:
        lines.append(f"| {lint['measure']}: online {lint['online_s']:.2f} s, {lint['squawk']} "
                     f"{lint['squawk_s']:.2f} s | {lint['ratio']:.2f}x squawk | "
                     f"≤ {lint['target_ratio']:.0f}x | {'yes' if lint['met'] else 'no'} |")
    else:
        lines.append(f"| {lint['measure']}: online {lint['online_s']:.2f} s | "
                     f"{lint.get('note')} | ≤ 2x squawk | not measured |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
