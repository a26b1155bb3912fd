"""Packaging: strategies/ ships inside the wheel as pgonline.strategies."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_non_editable_wheel_contains_the_strategies_package(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    wheel = next(tmp_path.glob("pgonline-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "pgonline/strategies/__init__.py" in names
    assert "pgonline/strategies/add_column.py" in names
    assert "pgonline/cli/main.py" in names and "pgonline/py.typed" in names
    assert not any(n.startswith("strategies/") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "online = pgonline.cli.main:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_every_strategy_module_registers_itself():
    from pgonline.registry import known_strategies

    assert "add-column" in known_strategies()


def test_the_version_online_prints_is_the_installed_package_version(online):
    from importlib.metadata import version

    r = online("--version", with_dsn=False)
    assert r.code == 0 and r.out.strip() == f"online, version {version('pgonline')}"


def test_version_and_lint_help_import_neither_the_driver_nor_the_parser():
    # Start-up time (issue #11, item 7): these commands must not pay for psycopg,
    # pglast, structlog or the strategies (benchmarks/startup.py measures it).
    import subprocess
    import sys

    for args in (["--version"], ["lint", "--help"]):
        code = (f"import sys; from pgonline.cli.main import run; run({args!r}); "
                "print(sorted(m for m in ('psycopg', 'pglast', 'structlog', 'rich', "
                "'pgonline.strategies', 'anyio') if m in sys.modules))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip().splitlines()[-1] == "[]", (args, out)


def test_lint_of_files_imports_neither_the_driver_nor_logging(tmp_path):
    # Linting without --dsn talks to no database and logs nothing: psycopg and
    # structlog (160 ms of the 1,500-file benchmark) stay unloaded.
    import subprocess
    import sys

    (tmp_path / "001.sql").write_text("SET lock_timeout = '2s';\nCREATE INDEX i ON t (a);\n")
    code = (f"import sys; from pgonline.cli.main import run; run(['lint', {str(tmp_path)!r}]); "
            "print(sorted(m for m in ('psycopg', 'structlog', 'rich', 'anyio', "
            "'pgonline.strategies') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "require-concurrent-index-creation" in out
    assert out.strip().splitlines()[-1] == "[]", out
