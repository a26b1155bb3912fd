"""Run `online lint` and squawk on tests/fixtures/lint_corpus and print a markdown comparison.

Each corpus file holds one kind of risky (or deliberately safe) statement,
after ``SET lock_timeout``/``SET statement_timeout`` so that timeout rules do
not fire everywhere.  A tool "catches" a risky file when it reports one of the
rule codes that describe that risk; on a safe file it should stay silent
(re-run robustness warnings are shown, but do not count as false alarms).

    python benchmarks/lint_compare.py [--squawk PATH] [--pg-version 14]

squawk is found via --squawk, $SQUAWK, PATH, or /tmp/squawkvenv/bin/squawk
(``pip install squawk-cli`` in any venv).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "lint_corpus"

# file prefix -> (pgonline codes that describe the risk, squawk rules that describe it).
# Empty sets: the file is safe and both tools should stay silent.
TARGETS: dict[str, tuple[set[str], set[str]]] = {
    "01": ({"require-concurrent-index-creation"}, {"require-concurrent-index-creation"}),
    "02": ({"require-concurrent-index-deletion"}, {"require-concurrent-index-deletion"}),
    "03": ({"add-column-volatile-default"}, {"adding-field-with-default"}),
    "04": (set(), set()),
    "05": ({"set-not-null-without-check"}, {"adding-not-nullable-field"}),
    "06": (set(), set()),
    "07": ({"constraint-missing-not-valid"},
           {"constraint-missing-not-valid", "adding-foreign-key-constraint"}),
    "08": ({"constraint-missing-not-valid"}, {"constraint-missing-not-valid"}),
    "09": ({"unique-constraint-without-index"}, {"disallowed-unique-constraint"}),
    "10": ({"column-type-rewrite"}, {"changing-column-type"}),
    "11": ({"rename-column"}, {"renaming-column"}),
    "12": ({"rename-table"}, {"renaming-table"}),
    "13": ({"drop-column"}, {"ban-drop-column"}),
    "14": ({"drop-table"}, {"ban-drop-table"}),
    "15": ({"missing-lock-timeout"}, {"require-lock-timeout", "require-timeout-settings"}),
    "16": ({"concurrently-in-transaction"}, {"ban-concurrent-index-creation-in-transaction"}),
    "17": ({"update-without-where"}, set()),
    "18": ({"syntax-error"}, {"syntax-error"}),
    "19": ({"syntax-error"}, {"syntax-error"}),
    "20": ({"non-idempotent"}, {"prefer-robust-stmts"}),
    "21": (set(), set()),
    "22": ({"missing-lock-timeout"}, {"require-lock-timeout", "require-timeout-settings"}),
    "23": ({"add-column-volatile-default"}, {"adding-field-with-default", "adding-serial-primary-key-field"}),
}
RISKY = {k for k, (p, _) in TARGETS.items() if p}
ROBUSTNESS = {"non-idempotent", "prefer-robust-stmts"}

Finding = tuple[str, int, int]  # code, line, column (1-based)


def run_pgonline(path: Path, pg_version: int) -> list[Finding]:
    proc = subprocess.run(
        [sys.executable, "-m", "pgonline", "lint", "--format", "json", "--pg-version", str(pg_version),
         str(path)], capture_output=True, text=True, check=False,
    )
    if proc.returncode not in (0, 9):
        raise SystemExit(f"online lint failed on {path}: {proc.stderr}")
    return [(f["code"], f["line"], f["column"]) for f in json.loads(proc.stdout)]


def run_squawk(squawk: str, path: Path, pg_version: int) -> list[Finding]:
    proc = subprocess.run([squawk, "--reporter", "json", f"--pg-version={pg_version}.0", str(path)],
                          capture_output=True, text=True, check=False)
    out = proc.stdout.strip()
    if not out:
        raise SystemExit(f"squawk produced no output on {path}: {proc.stderr}")
    # squawk's JSON positions are 0-based.
    return [(f["rule_name"], int(f["line"]) + 1, int(f["column"]) + 1) for f in json.loads(out)]


def squawk_version(squawk: str) -> str:
    return subprocess.run([squawk, "--version"], capture_output=True, text=True, check=False).stdout.strip()


def cell(found: list[Finding], targets: set[str]) -> tuple[str, bool]:
    if targets:
        hits = [f for f in found if f[0] in targets]
        if hits:
            code, line, col = hits[0]
            return f"✅ `{code}` {line}:{col}", True
        other = sorted({f[0] for f in found})
        return "❌ missed" + (f" (reported: {', '.join(f'`{c}`' for c in other)})" if other else ""), False
    noisy = sorted({f[0] for f in found})
    if not noisy:
        return "✅ silent", True
    if set(noisy) <= ROBUSTNESS:
        return "⚠️ " + ", ".join(f"`{c}`" for c in noisy), True
    return "❌ false alarm: " + ", ".join(f"`{c}`" for c in noisy), False


def describe(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    return first.removeprefix("--").strip()


def find_squawk(explicit: str | None) -> str | None:
    fallback = "/tmp/squawkvenv/bin/squawk"
    for candidate in (explicit, os.environ.get("SQUAWK"), shutil.which("squawk"), fallback):
        if candidate and Path(candidate).exists():
            return candidate
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--squawk", default=None)
    parser.add_argument("--pg-version", type=int, default=14)
    args = parser.parse_args()
    squawk = find_squawk(args.squawk)
    files = sorted(CORPUS.glob("*.sql"))
    score = {"pgonline": 0, "squawk": 0}
    safe_score = {"pgonline": 0, "squawk": 0}
    rows = []
    for path in files:
        key = path.name[:2]
        ours, theirs = TARGETS[key]
        p_cell, p_ok = cell(run_pgonline(path, args.pg_version), ours)
        if squawk:
            s_cell, s_ok = cell(run_squawk(squawk, path, args.pg_version), theirs)
        else:
            s_cell, s_ok = "n/a", False
        bucket = score if key in RISKY else safe_score
        bucket["pgonline"] += p_ok
        bucket["squawk"] += s_ok
        rows.append(f"| `{path.name}` | {describe(path)} | {p_cell} | {s_cell} |")
    version = squawk_version(squawk) if squawk else "squawk not installed"
    print(f"Corpus: `tests/fixtures/lint_corpus/` ({len(files)} files), target PostgreSQL {args.pg_version}; "
          f"{version}.\n")
    print("| file | statement | `online lint` | squawk |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    risky = len(RISKY)
    safe = len(files) - risky
    print(f"\nRisky statements caught: `online lint` {score['pgonline']}/{risky}, "
          f"squawk {score['squawk']}/{risky}.  Safe statements without a false alarm: "
          f"`online lint` {safe_score['pgonline']}/{safe}, squawk {safe_score['squawk']}/{safe}.")


if __name__ == "__main__":
    main()
