"""``online migrate``: numbered SQL migration directories (the seed's workflow, done safely)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from pgonline.cli import fleet as fleet_cli
from pgonline.cli.main import run_async
from pgonline.cli.options import MAX_WORKERS, build_throttles, dsn_option, throttle_options
from pgonline.connection import SessionSettings
from pgonline.errors import MigrationError, UsageError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_dir_arg = click.argument(
    "directory", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="DIR")

_LOCK_TIMEOUT_MS = SessionSettings().lock_timeout_ms


def _layout_option(f: F) -> F:
    return click.option(
        "--layout", type=click.Choice(["seed", "golang-migrate", "dbmate", "flyway"]),
        default=None, help="The directory's file layout (default: detected from the names).")(f)


def _table_option(f: F) -> F:
    """--table, and --layout: every command that reads the directory and its tracking table."""
    f = _layout_option(f)
    return click.option(
        "--table", default="schema_migrations", show_default=True, metavar="[SCHEMA.]NAME",
        help="Tracking table (an existing seed-style table is adopted).")(f)


def _run_options(f: F) -> F:
    opts = [
        click.option("--dry-run", is_flag=True, help="Show what would run; change nothing."),
        click.option("--lock-wait", type=click.FloatRange(0), default=10.0, show_default=True,
                     metavar="SECONDS",
                     help="Wait this long for another runner to finish before giving up."),
        click.option("--lock-timeout", "lock_timeout_ms", type=click.IntRange(1),
                     default=_LOCK_TIMEOUT_MS,
                     show_default=True, metavar="MS",
                     help="lock_timeout of each migration transaction (retried as a whole)."),
        click.option("--max-retries", type=click.IntRange(1), default=30, show_default=True,
                     help="Attempts per transaction on lock timeouts and serialization failures."),
    ]
    # --online runs risky statements through the strategies, watched like any job.
    f = throttle_options(f)
    for opt in reversed(opts):
        f = opt(f)
    return f


def _runner_options(dsn: str | None, table: str, kw: dict[str, Any], *, online: bool = False,
                    batch_size: int = 1000, sleep_ms: int = 10) -> Any:
    from pgonline.connection import SessionSettings, resolve_dsn
    from pgonline.engine.backfill import BatchOptions
    from pgonline.engine.change import RunContext
    from pgonline.engine.executor import ExecOptions
    from pgonline.engine.progress import Progress
    from pgonline.migrations.discovery import LAYOUTS
    from pgonline.migrations.runner import RunnerOptions
    from pgonline.sql.identifiers import QualifiedName

    url = resolve_dsn(dsn)
    layout = kw.get("layout")
    exec_opts = ExecOptions(
        settings=SessionSettings(lock_timeout_ms=kw["lock_timeout_ms"]),
        batch=BatchOptions(initial_size=batch_size, sleep_ms=sleep_ms,
                           max_attempts=kw["max_retries"]),
        max_attempts=kw["max_retries"],
        workers=kw.get("workers", 1),
    )
    context = RunContext(dsn=url, options=exec_opts, progress=Progress(),
                         throttles=build_throttles(kw), dry_run=kw["dry_run"], out=click.echo)
    return RunnerOptions(
        dsn=url, table=QualifiedName.parse(table), dry_run=kw["dry_run"],
        lock_timeout_ms=kw["lock_timeout_ms"], max_attempts=kw["max_retries"],
        lock_wait_s=kw["lock_wait"], online=online, context=context, out=click.echo,
        layout=LAYOUTS[layout] if layout else None,
        table_explicit=_given("table"),
    )


def _on_targets(fleet: fleet_cli.FleetArgs, table: str, kw: dict[str, Any],
                directory: Path, run: Callable[[Any], Awaitable[list[str]]], *, verb: str,
                online: bool = False, batch_size: int = 1000, sleep_ms: int = 10,
                nothing: str = "up to date") -> None:
    """``migrate up/down ... --targets FILE``: the same directory on every database of FILE.

    Each target has its own runner (its own connection, tracking table and
    migration lock) and, with --online, its own jobs in its own journal.
    """
    from pgonline.engine.fleet import Outcome, Target
    from pgonline.engine.progress import Progress
    from pgonline.migrations.runner import Runner

    targets: list[Target] = fleet_cli.read(fleet)
    many = fleet_cli.concurrent(fleet, len(targets))
    options: dict[int, Any] = {}
    for t in targets:
        opts = _runner_options(t.dsn, table, dict(kw), online=online, batch_size=batch_size,
                               sleep_ms=sleep_ms)
        out = fleet_cli.target_out(fleet, t.label)
        context = replace(opts.context, out=out,
                          progress=Progress(bar=False) if many else opts.context.progress)
        options[t.line] = replace(opts, out=out, context=context)

    async def work(t: Target) -> Outcome:
        opts = options[t.line]
        async with Runner(directory, opts) as runner:
            done = await run(runner)
        if opts.dry_run:
            return Outcome("planned")
        return Outcome(f"{len(done)} {verb}" if done else nothing)

    fleet_cli.run_fleet_command(fleet, targets, work, what="migrate command")


def _given(param: str) -> bool:
    """Whether the user gave ``--param`` (not its default)."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source(param) if ctx is not None else None
    return source not in (None, click.core.ParameterSource.DEFAULT,
                          click.core.ParameterSource.DEFAULT_MAP)


def _with_runner(directory: Path, opts: Any, fn: Callable[[Any], Awaitable[T]]) -> T:
    from pgonline.migrations.runner import Runner

    async def go() -> T:
        async with Runner(directory, opts) as runner:
            return await fn(runner)

    return run_async(go)


def register(cli: click.Group) -> None:
    cli.add_command(migrate)


@click.group("migrate")
def migrate() -> None:
    """Numbered SQL migrations: NNN_name.sql + NNN_name_down.sql (or golang-migrate's
    NNN_name.up.sql / .down.sql), tracked in schema_migrations."""


@migrate.command("validate")
@_dir_arg
@_layout_option
def validate_cmd(directory: Path, layout: str | None) -> None:
    """Check file naming, duplicates, up/down pairs and SQL syntax (gaps, missing downs: warnings)."""
    from pgonline.migrations import discovery
    from pgonline.migrations.splitting import parse_text

    migrations, problems = discovery.discover(
        directory, discovery.LAYOUTS[layout] if layout else None)
    sources = [(path, text) for m in migrations
               for path, text in ((m.up, m.up_source()), (m.down, m.down_source()))
               if path is not None and text is not None]
    files = {path for path, _ in sources}
    notes: list[str] = []
    for path, text in sources:
        try:
            pf = parse_text(text, path)
        except MigrationError as exc:
            problems.append(exc.message)
            continue
        if not pf.statements:
            notes.append(f"{path.name}: no statements")
        elif not pf.transactional:
            reasons = sorted({s.no_transaction or "" for s in pf.statements if s.no_transaction})
            notes.append(f"{path.name}: runs statement by statement ({', '.join(reasons)})")
    for note in notes:
        click.echo(f"note: {note}")
    for warning in discovery.warnings(migrations, directory):
        click.echo(f"warning: {warning}")
    if problems:
        raise MigrationError(
            f"{directory}: {len(problems)} problem(s):\n  " + "\n  ".join(problems),
            hint="fix the files listed; the naming rules are in docs/migrations.md")
    click.echo(f"{directory}: {len(migrations)} migration(s), {len(files)} file(s) OK")


@migrate.command("create")
@_dir_arg
@click.argument("name")
@click.option("--description", default=None, help="The header's Description line.")
@click.option("--author", default=None, help="The header's Author line (default: $GIT_AUTHOR_NAME or $USER).")
@click.option("--layout", "style", default=None,
              type=click.Choice(["seed", "golang-migrate", "dbmate", "flyway", "plain", "golang"]),
              help="File naming for an empty directory: the seed's NNN_name.sql + "
              "NNN_name_down.sql, golang-migrate's .up.sql/.down.sql, dbmate's one file with "
              "sections, Flyway's V/U files (default: the directory's, else seed).")
@click.option("--style", "style_alias", hidden=True,  # the option's name before --layout
              type=click.Choice(["seed", "golang-migrate", "plain", "golang"]))
@click.option("--seq/--timestamp", "seq", default=None,
              help="Version by the next number, or by the UTC time YYYYMMDDHHMMSS "
              "(default: the directory's, else --seq).")
@click.option("--dialect", type=click.Choice(["postgres", "postgresql", "pg"]), default=None,
              help="golang-migrate only: name the files NAME.postgres.up.sql/.down.sql, as "
              "histories with one file per database do (default: the directory's newest).")
@click.option("--dry-run", is_flag=True, help="Print the files; write nothing.")
def create_cmd(directory: Path, name: str, description: str | None, author: str | None,
               style: str | None, style_alias: str | None, seq: bool | None,
               dialect: str | None, dry_run: bool) -> None:
    """Create the next up + down migration pair in DIR."""
    style = style or style_alias
    from pgonline.migrations.discovery import LAYOUTS
    from pgonline.migrations.template import plan_new, write_new

    new = plan_new(directory, name, description=description, author=author,
                   style=LAYOUTS[style] if style else None,
                   timestamp=None if seq is None else not seq, dialect=dialect)
    files = [(new.up, new.up_text)] + ([(new.down, new.down_text)] if new.down else [])
    if dry_run:
        for path, text in files:
            click.echo(f"--- would create {path}\n{text}")
        return
    write_new(new)
    for path, _ in files:
        click.echo(f"created {path}")


@migrate.command("up")
@_dir_arg
@click.argument("count", type=click.IntRange(1), required=False)
@click.option("--online", is_flag=True,
              help="Rewrite risky statements (ADD COLUMN, CREATE INDEX ...) into staged online "
              "changes; such files no longer run as one transaction. Without it each such "
              "statement runs as written, after a warning with its lock and the table's rows.")
@click.option("--batch-size", type=click.IntRange(1), default=1000, show_default=True,
              help="--online backfills: rows in the first batch.")
@click.option("--sleep-ms", type=click.IntRange(0), default=10, show_default=True,
              help="--online backfills: pause between batches.")
@click.option("--workers", type=click.IntRange(1, MAX_WORKERS), default=1, show_default=True,
              metavar="N", help="--online backfills: N connections at once, each walking its "
              "own part of the key range (see `online backfill --help`).")
@dsn_option
@_table_option
@_run_options
@fleet_cli.fleet_options
def up_cmd(directory: Path, count: int | None, online: bool, batch_size: int, sleep_ms: int,
           dsn: str | None, table: str, **kw: Any) -> None:
    """Apply pending migrations (all, or the next COUNT), each file in one transaction when it can."""
    fleet = fleet_cli.take_fleet(kw)
    if fleet is not None:
        _on_targets(fleet, table, kw, directory, lambda r: r.up(count), verb="applied",
                    online=online, batch_size=batch_size, sleep_ms=sleep_ms)
        return
    opts = _runner_options(dsn, table, kw, online=online, batch_size=batch_size, sleep_ms=sleep_ms)
    done = _with_runner(directory, opts, lambda r: r.up(count))
    if done and not opts.dry_run:
        click.echo(f"{len(done)} migration(s) applied")


@migrate.command("down")
@_dir_arg
@click.argument("count", type=click.IntRange(1), required=False)
@click.option("--all", "all_", is_flag=True, help="Roll back every applied migration.")
@dsn_option
@_table_option
@_run_options
@fleet_cli.fleet_options
def down_cmd(directory: Path, count: int | None, all_: bool, dsn: str | None, table: str,
             **kw: Any) -> None:
    """Roll back the last COUNT applied migrations (or --all), newest first."""
    if (count is None) == (not all_):
        raise UsageError("give how many migrations to roll back (e.g. `down 1`) or --all",
                         hint="a bare `down` would be too easy to run by accident")
    fleet = fleet_cli.take_fleet(kw)
    if fleet is not None:
        _on_targets(fleet, table, kw, directory,
                    lambda r: r.down(None if all_ else count), verb="rolled back",
                    nothing="nothing to roll back")
        return
    opts = _runner_options(dsn, table, kw)
    done = _with_runner(directory, opts, lambda r: r.down(None if all_ else count))
    if done and not opts.dry_run:
        click.echo(f"{len(done)} migration(s) rolled back")


@migrate.command("force")
@_dir_arg
@click.argument("version")
@dsn_option
@_table_option
@_run_options
def force_cmd(directory: Path, version: str, dsn: str | None, table: str, **kw: Any) -> None:
    """Record that the schema is at VERSION (clears a dirty state; runs no migration).

    Rows up to VERSION become applied and clean (VERSION's checksum is taken
    from its file as it is now); rows after VERSION are removed; 0 means none.
    """
    opts = _runner_options(dsn, table, kw)
    _with_runner(directory, opts, lambda r: r.force(version))


@migrate.command("goto")
@_dir_arg
@click.argument("version")
@dsn_option
@_table_option
@_run_options
def goto_cmd(directory: Path, version: str, dsn: str | None, table: str, **kw: Any) -> None:
    """Migrate up or down until exactly the migrations up to VERSION are applied (0: none)."""
    opts = _runner_options(dsn, table, kw)
    done = _with_runner(directory, opts, lambda r: r.goto(version))
    if not opts.dry_run:
        click.echo(f"at version {version} ({len(done)} migration(s) run)")


@migrate.command("redo")
@_dir_arg
@dsn_option
@_table_option
@_run_options
def redo_cmd(directory: Path, dsn: str | None, table: str, **kw: Any) -> None:
    """Roll back the newest applied migration and apply it again (down 1, up 1)."""
    opts = _runner_options(dsn, table, kw)
    done = _with_runner(directory, opts, lambda r: r.redo())
    if done and not opts.dry_run:
        click.echo(f"redone {done[0]}")


@migrate.command("adopt")
@_dir_arg
@click.option("--from", "tool", type=click.Choice(["golang-migrate", "dbmate", "flyway", "seed"]),
              default=None, help="The tool that applied the history (default: detected).")
@dsn_option
@_table_option
@_run_options
def adopt_cmd(directory: Path, tool: str | None, dsn: str | None, table: str, **kw: Any) -> None:
    """Record what golang-migrate, dbmate or Flyway applied, so `migrate up` continues from there.

    Nothing is re-applied; the other tool's table is left as it is. A dirty or
    failed state is refused with the command that repairs it.
    """
    opts = _runner_options(dsn, table, kw)
    _with_runner(directory, opts, lambda r: r.adopt(tool))


def _read_rows(directory: Path, dsn: str | None, table: str, layout: str | None) -> Any:
    """Every migration with its state, read-only (a dry-run runner that takes no lock)."""
    opts = _runner_options(dsn, table, {"lock_timeout_ms": _LOCK_TIMEOUT_MS, "max_retries": 1,
                                        "dry_run": True, "lock_wait": 0, "layout": layout})

    async def rows(r: Any) -> Any:
        return await r.rows()

    return _with_runner(directory, opts, rows)


@migrate.command("status")
@_dir_arg
@dsn_option
@_table_option
def status_cmd(directory: Path, dsn: str | None, table: str, layout: str | None) -> None:
    """Every migration with its state: applied, pending, dirty, modified (edited after applying)."""
    found = _read_rows(directory, dsn, table, layout)
    click.echo(f"{'VERSION':<45} {'STATE':<11} {'APPLIED AT':<19} DURATION")
    for row in found:
        a = row.applied
        when = a.applied_at.strftime("%Y-%m-%d %H:%M:%S") if a and a.applied_at else ""
        took = f"{a.duration_ms} ms" if a and a.duration_ms is not None else ""
        line = f"{row.version:<45} {row.state:<11} {when:<19} {took}".rstrip()
        if a and a.error and row.state == "dirty":
            line += f"\n    {a.error}"
        click.echo(line)


@migrate.command("version")
@_dir_arg
@dsn_option
@_table_option
def version_cmd(directory: Path, dsn: str | None, table: str, layout: str | None) -> None:
    """Print the highest applied migration number (and "dirty" if it stopped midway)."""
    applied = [r for r in _read_rows(directory, dsn, table, layout) if r.applied and r.migration]
    if not applied:
        click.echo("none")
        return
    last = max(applied, key=lambda r: r.migration.number)
    dirty = any(r.state == "dirty" for r in applied)
    click.echo(f"{last.migration.number}{' (dirty)' if dirty else ''}")


@migrate.command("test")
@_dir_arg
@click.option("--dsn", default=None, metavar="DSN",
              help="Server to create the scratch database on (default: an embedded PostgreSQL). "
              "DATABASE_URL is deliberately not used.")
def test_cmd(directory: Path, dsn: str | None) -> None:
    """Apply every up, every down, every up again on a scratch database; report what downs miss."""
    from pgonline.connection import resolve_dsn
    from pgonline.migrations.scratch import run_test_cycle

    url = resolve_dsn(dsn) if dsn else None
    report = run_async(functools.partial(run_test_cycle, directory, url, out=click.echo))
    # Irreversible statements were listed as they were found; they are no
    # down's fault, so they qualify the verdict instead of failing it.
    irreversible = len(report.irreversible)
    caveat = (f" except {irreversible} irreversible change{'s' if irreversible > 1 else ''} (above)"
              if irreversible else "")
    click.echo(f"OK: {len(report.applied)} up, {len(report.rolled_back)} down, "
               f"{len(report.reapplied)} up again; every down restored the schema{caveat}")
