"""``online lint PATH...``: check migration files for locking and rewrite hazards."""

from __future__ import annotations

import functools

import click

from pgonline.cli.main import logs_on_demand, run_async
from pgonline.errors import LintFailed, UsageError
from pgonline.lint.findings import Finding, Severity
from pgonline.lint.output import FORMATS, render

# Behaviour assumed without --pg-version or --dsn: the oldest PostgreSQL major
# still supported by the community when this was written.
DEFAULT_PG_MAJOR = 14


def _list_rules() -> str:
    from pgonline.lint.engine import rule_catalog

    rows = rule_catalog().values()
    width = max(len(r.code) for r in rows)
    return "\n".join(f"{r.code:<{width}}  {r.severity.value:<7}  {r.summary}" for r in rows)


def lint_command(paths: tuple[str, ...], fmt: str, dsn: str | None,
                 pg_version: int | None) -> tuple[str, list[Finding]]:
    """Lint PATHS; return the rendered report and the findings."""
    # The parser and the rules load here, not when the CLI starts (`online lint --help`).
    from pgonline.lint.engine import discover, lint_parsed, parse_all, referenced
    from pgonline.lint.state import LintOptions

    files = discover(paths)
    parsed = parse_all(files)
    catalog = None
    if dsn is not None:
        from pgonline.connection import resolve_dsn
        from pgonline.lint.catalog_snapshot import take_snapshot

        tables, functions = referenced(parsed)
        catalog = run_async(functools.partial(take_snapshot, resolve_dsn(dsn), tables, functions))
    major = pg_version or (catalog.server_version_num // 10000 if catalog else DEFAULT_PG_MAJOR)
    findings = lint_parsed(parsed, LintOptions(pg_major=major, catalog=catalog))
    order = {f.display: i for i, f in enumerate(files)}
    findings.sort(key=lambda f: (order.get(f.path, 0), f.line, f.column, -f.severity.rank, f.code))
    return render(fmt, findings, {f.display: f.text for f in files}, len(files)), findings


def register(cli: click.Group) -> None:
    @logs_on_demand
    @cli.command("lint")
    @click.argument("paths", nargs=-1, metavar="PATH...")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), default="human", show_default=True,
                  help="human: file:line:col with help; json: a list of findings; "
                       "github: GitHub Actions annotations.")
    @click.option("--dsn", default=None, metavar="DSN",
                  help="Read table sizes, column types and function volatility from this database "
                       "(read-only). Not taken from $DATABASE_URL: pass it explicitly.")
    @click.option("--pg-version", type=click.IntRange(9, 99), default=None, metavar="N",
                  help=f"PostgreSQL major version the migrations target (default: the --dsn "
                       f"server's, else {DEFAULT_PG_MAJOR}).")
    @click.option("--fail-on", type=click.Choice([s.value for s in Severity]), default="error",
                  show_default=True, help="Exit with code 9 when a finding of this severity or worse exists.")
    @click.option("--list-rules", is_flag=True, help="Print every rule code and exit.")
    def lint_cmd(paths: tuple[str, ...], fmt: str, dsn: str | None, pg_version: int | None,
                 fail_on: str, list_rules: bool) -> None:
        """Check SQL migration files (or directories of them) for locking and rewrite hazards.

        Suppress a finding with `-- pgonline:ignore <code>` on the line before the statement.
        """
        if list_rules:
            click.echo(_list_rules())
            return
        if not paths:
            raise UsageError("no PATH given", hint="online lint migrations/ (files or directories)")
        report, findings = lint_command(paths, fmt, dsn, pg_version)
        click.echo(report)
        threshold = Severity(fail_on).rank
        failing = [f for f in findings if f.severity.rank >= threshold]
        if failing:
            raise LintFailed(f"lint found {len(failing)} problem(s) at or above severity {fail_on}",
                             hint="fix them, or suppress a reviewed one with "
                                  "`-- pgonline:ignore <code>` on the line before the statement")
