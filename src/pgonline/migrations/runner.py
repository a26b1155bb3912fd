"""Applying and rolling back a migration directory: ``online migrate up/down/status/force``.

How one file runs (decided from pglast's parse, never from regular expressions):

* **one transaction** (the normal case): the file's own ``BEGIN``/``COMMIT``
  are removed, its statements and the tracking row commit together, so a
  failure leaves nothing behind and nothing recorded.  Under
  ``lock_timeout`` a file that waited too long for a lock is rolled back and
  retried as a whole, which is safe precisely because it is one transaction.
* **statement by statement** when a statement cannot run in a transaction
  block (``CREATE INDEX CONCURRENTLY``, ``VACUUM`` ...) or, with ``--online``,
  was rewritten into a pgonline job: the version is recorded *dirty* first,
  consecutive ordinary statements still share one transaction, and the row
  is marked clean at the end.  If a statement fails the row stays dirty with
  the error and a hint; every runner then refuses to continue until
  ``online migrate force`` records what a human verified.

Without ``--online`` every statement ``--online`` would have rewritten is
still run as written, after a warning that names the lock it takes and the
table's estimated rows (``pg_class.reltuples``: no scan, no lock).

Only one runner works on a tracking table at a time (session advisory lock,
see :func:`pgonline.migrations.tracking.acquire_lock`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, LiteralString

import psycopg
import structlog

from pgonline.connection import Conn, connect, set_local
from pgonline.engine.change import RunContext
from pgonline.engine.retry import with_retries
from pgonline.errors import (
    CatalogError,
    MigrationError,
    PgOnlineError,
    PreflightError,
    StatementError,
)
from pgonline.lint.locks import TableLock, target_lock
from pgonline.migrations import adoption, discovery, rewrite
from pgonline.migrations.discovery import Migration
from pgonline.migrations.splitting import ParsedFile, Statement, line_column, parse_text
from pgonline.migrations.tracking import Applied, Tracker, acquire_lock, release_lock
from pgonline.sql.identifiers import QualifiedName

log = structlog.get_logger("pgonline.migrations.runner")


@dataclass
class RunnerOptions:
    dsn: str
    table: QualifiedName = field(default_factory=lambda: QualifiedName(None, "schema_migrations"))
    dry_run: bool = False
    lock_timeout_ms: int = 2000
    max_attempts: int = 30
    lock_wait_s: float = 10.0
    online: bool = False
    # The context handed to command functions for --online rewrites.
    context: RunContext | None = None
    out: Callable[[str], None] = print
    layout: discovery.Style | None = None  # --layout: forced, else detected from the names
    # --table was given: never swapped for the table `migrate adopt` wrote to.
    table_explicit: bool = False


@dataclass(frozen=True)
class Row:
    """One line of ``status``: a file, its tracking row, or both."""

    version: str
    migration: Migration | None
    applied: Applied | None
    state: str  # pending | applied | dirty | modified | unverified | no file | down record


def _q(text: str) -> LiteralString:
    # Migration files are the user's SQL by definition: they are sent as
    # written (no parameters, so ``%`` needs no escaping).
    return text


def reconcile(migrations: Sequence[Migration], rows: Sequence[Applied]) -> list[Row]:
    by_number: dict[int, Applied] = {}
    out: list[Row] = []
    versions = {m.version for m in migrations}
    for a in rows:
        # A version ending in _down that is a migration of its own (dbmate's
        # 2024..._slow_down.sql) is not the seed loop's stray down record.
        if a.is_down_record and a.version not in versions:
            out.append(Row(a.version, None, a, "down record"))
        elif a.number is not None and a.number not in by_number:
            by_number[a.number] = a
        else:
            out.append(Row(a.version, None, a, "no file"))
    known = {m.number for m in migrations}
    for number, a in by_number.items():
        if number not in known:
            out.append(Row(a.version, None, a, "no file"))
    for m in migrations:
        hit = by_number.get(m.number)
        if hit is None:
            state = "pending"
        elif hit.dirty:
            state = "dirty"
        elif hit.checksum is None:
            state = "unverified"  # recorded by the seed's script: no checksum to compare
        elif hit.checksum != m.checksum():
            state = "modified"
        else:
            state = "applied"
        out.append(Row(m.version, m, hit, state))
    return sorted(out, key=lambda r: (r.migration.number if r.migration else
                                      (r.applied.number if r.applied and r.applied.number is not None
                                       else -1), r.version))


def _refuse_unsafe_state(rows: Sequence[Row], table: QualifiedName, *, for_up: bool) -> None:
    dirty = [r for r in rows if r.state == "dirty"]
    if dirty:
        r = dirty[0]
        prev = _previous_number(rows, r)
        raise MigrationError(
            f"migration {r.version} is dirty: it stopped midway outside a transaction"
            + (f" ({r.applied.error})" if r.applied and r.applied.error else ""),
            hint=f"repair the schema by hand, then record the truth: `online migrate force "
            f"{_num(r)}` if {r.version} is now fully applied, or `online migrate force {prev}` "
            f"if you undid it",
        )
    downs = [r for r in rows if r.state == "down record"]
    if downs:
        raise MigrationError(
            f"{table} records down files as applied ({', '.join(r.version for r in downs)}): the "
            "seed's `for f in *.sql` loop ran each *_down.sql right after its up file",
            hint="check whether those migrations' objects exist, delete the *_down rows, and "
            "use `online migrate force N` to record the version the schema is really at",
        )
    orphans = [r for r in rows if r.state == "no file"]
    if orphans:
        raise MigrationError(
            f"{table} records migrations with no file in the directory: "
            + ", ".join(r.version for r in orphans),
            hint="restore the files (wrong directory or branch?), or `online migrate force N`",
        )
    if for_up:
        modified = [r for r in rows if r.state == "modified"]
        if modified:
            raise MigrationError(
                "applied migration(s) edited since they were applied (checksum mismatch): "
                + ", ".join(r.migration.up.name for r in modified if r.migration),
                hint="restore the applied file from version control and put the change in a new "
                "migration (`online migrate create`)",
            )


def _num(r: Row) -> str:
    return str(r.migration.number if r.migration else (r.applied.number if r.applied else 0))


def _previous_number(rows: Sequence[Row], r: Row) -> int:
    n = r.migration.number if r.migration else (r.applied.number or 0) if r.applied else 0
    earlier = [x.migration.number for x in rows if x.migration and x.migration.number < n]
    return max(earlier, default=0)


class Runner:
    """One invocation of ``online migrate``: a connection, the lock, the tracking table."""

    def __init__(self, directory: Path, options: RunnerOptions) -> None:
        self.directory = directory
        self.opts = options
        self.out = options.out
        self.migrations = discovery.load(directory, options.layout)
        for warning in discovery.warnings(self.migrations, directory):
            log.warning("migration directory", directory=str(directory), warning=warning)
        self.conn: Conn | None = None
        self.tracker: Tracker | None = None
        self.server_major = 0
        # Tables created by earlier statements of this run: statements on them are not
        # rewritten by --online (see rewrite.RewriteScope).
        self.rewrite_scope = rewrite.RewriteScope()

    async def __aenter__(self) -> Runner:
        self.conn = await connect(self.opts.dsn)
        self.server_major = self.conn.info.server_version // 10000
        # After `migrate adopt` from golang-migrate or dbmate, their table keeps
        # the default name and ours has another: use ours.
        table = await adoption.tracking_table(self.conn, self.opts.table,
                                              explicit=self.opts.table_explicit)
        if table != self.opts.table:
            self.opts = replace(self.opts, table=table)
        self.tracker = Tracker(self.conn, self.opts.table)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    @property
    def c(self) -> Conn:
        assert self.conn is not None
        return self.conn

    @property
    def t(self) -> Tracker:
        assert self.tracker is not None
        return self.tracker

    async def _begin_writing(self) -> None:
        """Lock out other runners, then create or adopt the tracking table."""
        if self.opts.dry_run:
            return
        await acquire_lock(self.c, self.opts.table, self.opts.lock_wait_s)
        added = await self.t.ensure()
        if added:
            self.out(f"adopted existing {self.opts.table}: added column(s) {', '.join(added)}")

    async def _end_writing(self) -> None:
        if not self.opts.dry_run and not self.c.closed:
            await release_lock(self.c, self.opts.table)

    async def rows(self) -> list[Row]:
        return reconcile(self.migrations, await self.t.rows())

    # -- up ----------------------------------------------------------------------------

    async def up(self, count: int | None = None, *, to: int | None = None) -> list[str]:
        """Apply the pending migrations in order: ``count`` of them, or those up to number ``to``."""
        await self._begin_writing()
        try:
            rows = await self.rows()
            _refuse_unsafe_state(rows, self.opts.table, for_up=True)
            applied = {r.migration.number for r in rows if r.migration and r.applied}
            pending = [m for m in self.migrations if m.number not in applied]
            late = [m for m in pending if applied and m.number < max(applied)]
            if late:
                raise MigrationError(
                    f"{late[0].up.name} is pending but a later migration "
                    f"({max(applied)}) is already applied (out of order)",
                    hint="renumber it after the latest applied migration",
                )
            todo = [m for m in pending if to is None or m.number <= to]
            todo = todo if count is None else todo[:count]
            if not todo:
                self.out("nothing to apply: the database is up to date")
                return []
            # Parse every file before running any: a syntax error anywhere
            # stops the run with nothing applied.
            parsed = [(m, parse_text(m.up_source(), m.up, server_major=self.server_major))
                      for m in todo]
            done: list[str] = []
            for m, pf in parsed:
                await self._apply(m, pf)
                done.append(m.version)
            return done
        finally:
            await self._end_writing()

    async def _rewrites(self, pf: ParsedFile) -> list[rewrite.Rewrite | None]:
        """What runs instead of each statement (None: the statement as written).

        The scope follows every file, with or without ``--online``, so the
        warnings skip tables created earlier in the run exactly as ``--online``
        skips rewriting them.
        """
        if self.opts.online:
            return self.rewrite_scope.rewrites(pf.statements)
        await self._warn_rewritable(pf, [self._would_rewrite(s) for s in pf.statements])
        return [None] * len(pf.statements)

    def _would_rewrite(self, s: Statement) -> rewrite.Rewrite | None:
        try:
            [found] = self.rewrite_scope.rewrites([s])
        except PgOnlineError:
            # A recogniser refused the statement's input, so --online would
            # stop there; run as written it is the user's SQL, and a warning
            # must never be what makes it fail.
            return None
        return found

    async def _warn_rewritable(self, pf: ParsedFile, would: Sequence[rewrite.Rewrite | None]) -> None:
        """One warning per statement ``--online`` would have rewritten; what runs is unchanged."""
        for number, (s, rw) in enumerate(zip(pf.statements, would, strict=True), 1):
            if rw is None:
                continue
            lock = target_lock(s.node)
            if lock is None:  # unreachable: every recognised statement changes one table
                continue
            table, rows = await self._table_and_rows(lock)
            line = line_column(pf.source, s.offset)[0]
            log.warning(f"statement {number} of {pf.path.name} (line {line}) takes {lock.mode} on "
                        f"{_where(lock, table, rows)}; `migrate up --online` runs it as "
                        f"`{rw.summary}`",
                        file=pf.path.name, line=line, statement=number, lock=lock.mode,
                        table=table or str(lock.ref), rows=rows, online=rw.command)

    async def _table_and_rows(self, lock: TableLock) -> tuple[str | None, int | None]:
        """The locked table as the server names it, and its ``reltuples`` (None: never analyzed).

        Catalog rows only: ``to_regclass`` takes no lock on the table and
        ``reltuples`` needs no scan, so a warning never waits behind the
        application or another migration.  For DROP INDEX the locked table is
        the index's (``pg_index.indrelid``).
        """
        try:
            return await self._locked_table(lock)
        except psycopg.Error:
            # A warning is advice: whatever goes wrong looking the table up
            # leaves it without the numbers (a lost connection is reported by
            # the statement that runs next).
            return None, None

    async def _locked_table(self, lock: TableLock) -> tuple[str | None, int | None]:
        # Never analyzed: PostgreSQL 14+ says so with reltuples = -1.  Before
        # 14 a new table has reltuples = 0 and relpages = 0, which an analyzed
        # empty table has too; the statistics collector tells them apart (no
        # ANALYZE or VACUUM, manual or automatic, ever counted for it).
        cur = await self.c.execute(
            """
            SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), c.reltuples::bigint,
                   c.reltuples < 0
                   OR (c.reltuples = 0 AND c.relpages = 0
                       AND coalesce((SELECT s.analyze_count + s.autoanalyze_count
                                            + s.vacuum_count + s.autovacuum_count
                                       FROM pg_stat_all_tables s WHERE s.relid = c.oid), 0) = 0)
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = CASE WHEN %(of_index)s
                                THEN (SELECT x.indrelid FROM pg_index x
                                       WHERE x.indexrelid = to_regclass(%(name)s))
                                ELSE to_regclass(%(name)s) END
            """,
            {"name": lock.ref.regclass_text(), "of_index": lock.of_index},
        )
        row = await cur.fetchone()
        if row is None:
            return None, None
        table, reltuples, never_analyzed = row
        return str(table), None if never_analyzed else int(reltuples)

    async def _apply(self, m: Migration, pf: ParsedFile) -> None:
        rewrites = await self._rewrites(pf)
        checksum = m.checksum()
        if pf.transactional and not any(rewrites):
            if self.opts.dry_run:
                self.out(f"would apply {m.version} in one transaction "
                         f"({len(pf.statements)} statement(s))")
                for s in pf.statements:
                    self.out("  " + _first_line(s.text))
                return
            t0 = time.monotonic()

            async def record() -> None:
                await self.t.record(m.version, checksum, int((time.monotonic() - t0) * 1000))

            await self._run_transaction(pf, pf.statements, record, what=m.version, rolled_back=(
                f"{m.up.name} ran in one transaction, which was rolled back: nothing from it "
                "was applied and nothing was recorded; fix it and run `online migrate up` again"))
            self.out(f"applied {m.version} in {time.monotonic() - t0:.2f}s (one transaction)")
            return
        await self._apply_stepwise(m, pf, rewrites, checksum)

    async def _run_transaction(self, pf: ParsedFile, statements: Sequence[Statement],
                               finish: Callable[[], Any], *, what: str, rolled_back: str) -> None:
        """Run statements (and ``finish``) in one transaction, retried as a whole on lock timeouts."""

        async def attempt() -> None:
            async with self.c.transaction():
                await self.c.execute(set_local("lock_timeout", self.opts.lock_timeout_ms))
                if pf.set_transaction and statements and statements[0] is pf.statements[0]:
                    await self.c.execute(_q(pf.set_transaction))
                for s in statements:
                    await self._execute(pf, s, hint=rolled_back)
                await finish()

        await with_retries(what, attempt, attempts=self.opts.max_attempts)

    async def _execute(self, pf: ParsedFile, s: Statement, *, hint: str) -> None:
        try:
            await self.c.execute(_q(s.text))
        except psycopg.Error as exc:
            from pgonline.engine.retry import is_retryable

            if is_retryable(exc):
                raise
            raise statement_error(pf, s, exc, hint=hint) from exc

    async def _apply_stepwise(self, m: Migration, pf: ParsedFile,
                              rewrites: Sequence[rewrite.Rewrite | None], checksum: str) -> None:
        why = [f"{s.no_transaction} at {pf.position(s.offset)}"
               for s in pf.statements if s.no_transaction]
        why += [f"{r.command} rewrite at {pf.position(s.offset)}"
                for s, r in zip(pf.statements, rewrites, strict=True) if r]
        groups = _groups(pf.statements, rewrites)
        if self.opts.dry_run:
            self.out(f"would apply {m.version} statement by statement (not one transaction: "
                     f"{'; '.join(why)})")
            refused: list[PreflightError] = []
            for kind, stmts, rw in groups:
                if rw is not None:
                    self.out(f"  [{rw.command}] {rw.summary}  <- {pf.position(stmts[0].offset)}")
                    found = await self._dry_run_rewrite(rw)
                    if found is not None:
                        refused.append(PreflightError(_located(pf, stmts[0], found.message),
                                                      hint=found.hint))
                elif kind == "tx":
                    self.out(f"  [transaction] {len(stmts)} statement(s): "
                             + "; ".join(_first_line(s.text) for s in stmts))
                else:
                    self.out(f"  [autocommit] {_first_line(stmts[0].text)}")
            if refused:
                # A dry run that would stop on a pre-flight refusal says so with
                # the same exit code as the real run (nothing was changed).
                raise refused[0]
            return
        t0 = time.monotonic()
        await self.t.mark_dirty(m.version, checksum, "in progress (statement by statement)")
        self.out(f"applying {m.version} statement by statement ({'; '.join(why)})")
        done_upto: Statement | None = None
        for kind, stmts, rw in groups:
            hint = _dirty_hint(pf, m, done_upto, stmts[0])
            try:
                if rw is not None:
                    assert self.opts.context is not None, "--online needs a RunContext"
                    await rw.run(replace(self.opts.context, dry_run=False))
                elif kind == "tx":
                    await self._run_transaction(pf, stmts, _noop, what=m.version, rolled_back=hint)
                else:
                    await self._execute(pf, stmts[0], hint=hint)
            except PgOnlineError as exc:
                await self.t.mark_dirty(m.version, checksum, _located(pf, stmts[0], exc.message))
                if isinstance(exc, StatementError | MigrationError) and exc.hint == hint:
                    raise
                raise type(exc)(_located(pf, stmts[0], exc.message),
                                hint=hint if exc.hint is None else f"{exc.hint}; then {hint}") from exc
            except psycopg.Error as exc:
                await self.t.mark_dirty(m.version, checksum,
                                        f"failed at {pf.position(stmts[0].offset)}: {exc}")
                raise statement_error(pf, stmts[0], exc, hint=hint) from exc
            done_upto = stmts[-1]
        await self.t.record(m.version, checksum, int((time.monotonic() - t0) * 1000))
        self.out(f"applied {m.version} in {time.monotonic() - t0:.2f}s (statement by statement)")

    async def _dry_run_rewrite(self, rw: rewrite.Rewrite) -> PreflightError | None:
        assert self.opts.context is not None
        ctx = replace(self.opts.context, dry_run=True, out=lambda s: self.out("    " + s.replace(
            "\n", "\n    ")))
        try:
            await rw.run(ctx)
        except CatalogError as exc:
            # The table may be created by an earlier pending migration.
            self.out(f"    (plan is computed when it runs: {exc.message})")
        except PreflightError as exc:
            # The data would make the command refuse: show it, keep listing the rest.
            self.out(f"    would be refused: {exc.message}")
            return exc
        return None

    # -- down --------------------------------------------------------------------------

    async def down(self, count: int | None, *, to: int | None = None) -> list[str]:
        """Roll back applied migrations, newest first: ``count`` of them, or those after ``to``."""
        await self._begin_writing()
        try:
            rows = await self.rows()
            _refuse_unsafe_state(rows, self.opts.table, for_up=False)
            applied = [r.migration for r in rows if r.migration and r.applied]
            todo = [m for m in reversed(applied) if to is None or m.number > to]
            if count is not None:
                todo = todo[:count]
            if not todo:
                self.out("nothing to roll back: no migration is applied")
                return []
            missing = [m.up.name for m in todo if m.down is None]
            if missing:
                raise MigrationError(f"no down migration for {', '.join(missing)}",
                                     hint="write the down file(s) first; nothing was rolled back")
            parsed = [(m, parse_text(m.down_source() or "", m.down,
                                     server_major=self.server_major))
                      for m in todo if m.down is not None]
            done: list[str] = []
            for m, pf in parsed:
                await self._revert(m, pf)
                done.append(m.version)
            return done
        finally:
            await self._end_writing()

    async def _revert(self, m: Migration, pf: ParsedFile) -> None:
        assert m.down is not None
        if pf.transactional:
            if self.opts.dry_run:
                self.out(f"would roll back {m.version} in one transaction with {m.down.name}")
                return
            t0 = time.monotonic()
            await self._run_transaction(
                pf, pf.statements, lambda: self.t.remove(m.version), what=f"down {m.version}",
                rolled_back=f"{m.down.name} ran in one transaction, which was rolled back: "
                f"{m.version} is still applied; fix the down file and run `online migrate down` again")
            self.out(f"rolled back {m.version} in {time.monotonic() - t0:.2f}s (one transaction)")
            return
        why = "; ".join(f"{s.no_transaction} at {pf.position(s.offset)}"
                        for s in pf.statements if s.no_transaction)
        if self.opts.dry_run:
            self.out(f"would roll back {m.version} with {m.down.name} statement by statement ({why})")
            return
        t0 = time.monotonic()
        await self.t.mark_dirty(m.version, None, "rolling back (statement by statement)")
        done_upto: Statement | None = None
        for kind, stmts, _ in _groups(pf.statements, [None] * len(pf.statements)):
            hint = _dirty_hint(pf, m, done_upto, stmts[0], down=True)
            try:
                if kind == "tx":
                    await self._run_transaction(pf, stmts, _noop, what=f"down {m.version}",
                                                rolled_back=hint)
                else:
                    await self._execute(pf, stmts[0], hint=hint)
            except PgOnlineError as exc:
                await self.t.mark_dirty(m.version, None, "rollback " + _located(pf, stmts[0],
                                                                                exc.message))
                raise
            done_upto = stmts[-1]
        await self.t.remove(m.version)
        self.out(f"rolled back {m.version} in {time.monotonic() - t0:.2f}s (statement by statement)")

    # -- adopt -------------------------------------------------------------------------

    async def adopt(self, tool: str | None) -> list[str]:
        """Record what another runner applied (see :mod:`pgonline.migrations.adoption`)."""
        foreign = await adoption.read_foreign(self.c, tool)
        if foreign.tool == "seed":
            self.out(f"{foreign.table} is a seed-style tracking table: `online migrate up` "
                     "uses it as it is; nothing to adopt")
            return []
        applied = adoption.applied_migrations(foreign, self.migrations)
        table = adoption.target_table(foreign, self.opts.table,
                                      explicit=self.opts.table_explicit)
        if self.opts.dry_run:
            for m in applied:
                self.out(f"would record {m.version} as applied (in {table})")
            return [m.version for m in applied]
        tracker = Tracker(self.c, table)
        await acquire_lock(self.c, table, self.opts.lock_wait_s)
        try:
            await tracker.ensure()
            async with self.c.transaction():
                done = await adoption.record(tracker, applied)
        finally:
            await release_lock(self.c, table)
        self.out(f"adopted {len(applied)} applied migration(s) from {foreign.tool} "
                 f"({foreign.table}) into {table}; {len(done)} recorded now")
        return done

    # -- force -------------------------------------------------------------------------

    def _require_number(self, version: int | str) -> int:
        """``version`` as the directory numbers it (Flyway: ``1.2`` or ``V1.2``); must exist."""
        text = str(version).strip()
        flyway = any(m.style is discovery.Style.FLYWAY for m in self.migrations)
        try:
            number = (0 if text == "0" else discovery.flyway_number(text.removeprefix("V"))
                      if flyway else int(text))
        except ValueError:
            raise MigrationError(f"{version!r} is not a migration version") from None
        known = {m.number for m in self.migrations}
        if number != 0 and number not in known:
            raise MigrationError(f"no migration numbered {text} in {self.directory}",
                                 hint="use an existing number, or 0 for 'nothing applied'")
        return number

    async def goto(self, version: int | str) -> list[str]:
        """Migrate up or down until exactly the migrations up to ``number`` are applied.

        The direction is read before taking the runner lock; ``up(to=)`` and
        ``down(to=)`` each re-read the state under the lock and only move
        toward ``number``, so a runner that moved in between cannot make it
        overshoot.
        """
        number = self._require_number(version)
        rows = await self.rows()
        applied = [r.migration.number for r in rows if r.migration and r.applied]
        if any(n > number for n in applied):
            return await self.down(None, to=number)
        return await self.up(to=number)

    async def redo(self) -> list[str]:
        """Roll back the newest applied migration and apply it again (golang-migrate's redo)."""
        undone = await self.down(1)
        if not undone or self.opts.dry_run:
            return undone
        again = next(m for m in self.migrations if m.version == undone[0])
        return [*undone, *await self.up(to=again.number)]

    async def force(self, version: int | str) -> None:
        """Record that the schema is at ``version``: rows up to it clean, later rows removed."""
        number = self._require_number(version)
        await self._begin_writing()
        try:
            rows = await self.rows()
            changes: list[tuple[str, Row]] = []
            for r in rows:
                n = r.migration.number if r.migration else r.applied.number if r.applied else None
                if r.state == "down record" or (n is not None and n > number and r.applied):
                    changes.append(("remove", r))
                elif r.migration and n is not None and n <= number and (
                        r.applied is None or r.applied.dirty or n == number):
                    changes.append(("record", r))
            if self.opts.dry_run:
                for what, r in changes:
                    self.out(f"would {what} {r.version}")
                if not changes:
                    self.out(f"nothing to change: the tracking table already says {version}")
                return
            async with self.c.transaction():
                for what, r in changes:
                    if what == "remove":
                        await self.t.remove(r.version)
                    else:
                        assert r.migration is not None
                        # The user asserts this file's current content is what
                        # the database holds, so its checksum is recorded anew.
                        await self.t.record(r.version, r.migration.checksum(),
                                            r.applied.duration_ms if r.applied else None)
            for what, r in changes:
                self.out(f"{'removed' if what == 'remove' else 'recorded'} {r.version}")
            self.out(f"forced version {version}")
        finally:
            await self._end_writing()


def _located(pf: ParsedFile, s: Statement, message: str) -> str:
    """``message`` prefixed with the statement's file:line:column unless it has one already."""
    if message.startswith(f"{pf.path.name}:"):
        return message
    return f"failed at {pf.position(s.offset)}: {message}"


async def _noop() -> None:
    return None


def _where(lock: TableLock, table: str | None, rows: int | None) -> str:
    """``public.users (~1,000,000 rows)`` for a warning."""
    if table is None:
        # Created by an earlier statement of this file (IF NOT EXISTS), or misspelt.
        return f"{lock.ref} (not in the database yet)"
    return f"{table} ({'rows unknown: never analyzed' if rows is None else f'~{rows:,} rows'})"


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 100 else line[:97] + "..."


def _groups(statements: Sequence[Statement], rewrites: Sequence[rewrite.Rewrite | None]
            ) -> list[tuple[str, list[Statement], rewrite.Rewrite | None]]:
    """Consecutive ordinary statements share a transaction; the others run alone."""
    out: list[tuple[str, list[Statement], rewrite.Rewrite | None]] = []
    for s, rw in zip(statements, rewrites, strict=True):
        if rw is not None:
            out.append(("rewrite", [s], rw))
        elif s.no_transaction:
            out.append(("autocommit", [s], None))
        elif out and out[-1][0] == "tx":
            out[-1][1].append(s)
        else:
            out.append(("tx", [s], None))
    return out


def _dirty_hint(pf: ParsedFile, m: Migration, done_upto: Statement | None, failed: Statement,
                *, down: bool = False) -> str:
    ran = (f"statements up to {pf.position(done_upto.offset)} were applied"
           if done_upto else "no earlier statement of the file was applied")
    prev = m.number - 1
    if down:
        return (f"{pf.path.name} runs outside a transaction: {ran}, the one at "
                f"{pf.position(failed.offset)} was not; {m.version} is marked dirty. Finish or undo "
                f"the rollback by hand, then `online migrate force {prev}` (rolled back) or "
                f"`online migrate force {m.number}` (still applied)")
    extra = ""
    if failed.no_transaction == "CREATE INDEX CONCURRENTLY":
        extra = " (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index: DROP INDEX CONCURRENTLY it)"
    return (f"{pf.path.name} runs outside a transaction: {ran}, the one at "
            f"{pf.position(failed.offset)} was not{extra}; {m.version} is marked dirty. Complete "
            f"or undo it by hand, then `online migrate force {m.number}` (completed) or "
            f"`online migrate force {prev}` (undone)")


def statement_error(pf: ParsedFile, s: Statement, exc: psycopg.Error, *, hint: str) -> StatementError:
    """A server error located in the file: ``file:line:column: message [SQLSTATE]``."""
    diag = exc.diag
    offset = s.offset
    pos = diag.statement_position
    if pos and pos.isdigit():
        offset += int(pos) - 1  # 1-based character position within the statement
    msg = diag.message_primary or str(exc).strip()
    detail = f" ({diag.message_detail})" if diag.message_detail else ""
    server_hint = f" [server hint: {diag.message_hint}]" if diag.message_hint else ""
    return StatementError(f"{pf.position(offset)}: {msg}{detail} [SQLSTATE {exc.sqlstate}]{server_hint}",
                          hint=hint, sqlstate=exc.sqlstate)
