"""``online migrate test``: every up, every down, every up again, on a scratch database.

The seed's ``test-migration.sh`` ran one up and one down and asked a human to
read ``\\d`` output.  Here a schema snapshot (tables, columns, indexes,
constraints, sequences, views, functions, triggers, types, extensions,
schemas, policies, rules; each with its full definition as text) is taken
before the first migration and after each one.  After rolling back version
N the schema must equal the snapshot taken before N was applied, so every
object a down file forgot (or removed too much) is attributed to its
version.  Only objects N's up or N's down changed are judged: whatever a
later version's down got wrong is reported against that version alone, never
carried into N's verdict.  Enum values N's up added with ``ALTER TYPE ...
ADD VALUE`` cannot be removed in PostgreSQL; they are reported as
irreversible, not as the down's fault.  Applying all ups again then proves
the down files left the database re-migratable.

The scratch database is created on the given server (``CREATE DATABASE``
privilege needed) or on an embedded PostgreSQL when no DSN is given, and is
always dropped afterwards.
"""

from __future__ import annotations

import difflib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import psycopg
from pglast import ast
from psycopg import sql

from pgonline.connection import Conn, connect, with_database
from pgonline.errors import MigrationError, PgOnlineError
from pgonline.migrations import discovery
from pgonline.migrations.runner import Runner, RunnerOptions
from pgonline.migrations.splitting import ParsedFile, parse_text
from pgonline.sql.identifiers import QualifiedName

Snapshot = dict[tuple[str, str], str]  # (kind, identity) -> definition

_USER_NS = """
    n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgonline')
    AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
"""

# Composed from constants only (no input): the f-string just shares the namespace filter.
# The first branch is cast to text on purpose: a UNION takes its column types
# from it, and pg_get_userbyid() returns ``name``, which silently cut every
# definition below to 63 bytes (an index ``WHERE (id > 5)`` then compared
# equal to ``WHERE (id > 0)``).
SNAPSHOT_SQL = f"""
SELECT 'schema'::text, quote_ident(n.nspname)::text, pg_get_userbyid(n.nspowner)::text
  FROM pg_namespace n WHERE {_USER_NS}
UNION ALL
SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
                      WHEN 'i' THEN 'index' WHEN 'I' THEN 'index' WHEN 'f' THEN 'foreign table'
                      WHEN 'c' THEN 'composite type' ELSE c.relkind::text END,
       c.oid::regclass::text,
       CASE WHEN c.relkind IN ('i', 'I') THEN pg_get_indexdef(c.oid)
            WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid)
            WHEN c.relkind = 'S' THEN (
                SELECT format('AS %%s START %%s INCREMENT %%s MINVALUE %%s MAXVALUE %%s CACHE %%s%%s',
                              format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmin,
                              s.seqmax, s.seqcache, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END)
                  FROM pg_sequence s WHERE s.seqrelid = c.oid)
            ELSE '' END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_NS} AND c.relkind <> 't'
   AND c.oid <> %(tracking)s::oid
   AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indexrelid = c.oid AND x.indrelid = %(tracking)s::oid)
UNION ALL
SELECT 'column', c.oid::regclass::text || '.' || quote_ident(a.attname),
       format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
       || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE {_USER_NS} AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND c.oid <> %(tracking)s::oid
UNION ALL
SELECT 'constraint', quote_ident(co.conname) || ' on ' ||
       coalesce(nullif(co.conrelid, 0)::regclass::text, format_type(co.contypid, NULL)),
       pg_get_constraintdef(co.oid)
  FROM pg_constraint co JOIN pg_namespace n ON n.oid = co.connamespace
 WHERE {_USER_NS} AND co.conrelid <> %(tracking)s::oid
UNION ALL
SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END,
       p.oid::regprocedure::text,
       -- The whole CREATE statement (return type, volatility, SET ...), not
       -- just the body; pg_get_functiondef() refuses aggregates.
       CASE WHEN p.prokind = 'a' THEN (
           SELECT concat_ws(', ', 'SFUNC = ' || a.aggtransfn::regprocedure::text,
                            'STYPE = ' || format_type(a.aggtranstype, NULL),
                            'FINALFUNC = ' || nullif(a.aggfinalfn::oid, 0)::regprocedure::text,
                            'INITCOND = ' || a.agginitval)
             FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
       ELSE pg_get_functiondef(p.oid) END
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE {_USER_NS}
   AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_proc'::regclass
                   AND dep.objid = p.oid AND dep.deptype = 'e')
UNION ALL
SELECT 'trigger', quote_ident(t.tgname) || ' on ' || t.tgrelid::regclass::text, pg_get_triggerdef(t.oid)
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_NS} AND NOT t.tgisinternal
UNION ALL
SELECT CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain' WHEN 'r' THEN 'range type'
                      WHEN 'm' THEN 'multirange type' ELSE 'type' END,
       format_type(t.oid, NULL),
       -- Enum labels as a JSON array, so that labels containing commas stay
       -- apart and single labels can be picked out (see _enum_labels).
       CASE t.typtype WHEN 'e' THEN coalesce((SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)::text
                                                FROM pg_enum e WHERE e.enumtypid = t.oid), '[]')
                      WHEN 'd' THEN format_type(t.typbasetype, t.typtypmod)
                                    || coalesce(' DEFAULT ' || t.typdefault, '')
                      ELSE '' END
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE {_USER_NS} AND t.typtype IN ('e', 'd', 'r', 'm') AND t.typelem = 0
   AND NOT EXISTS (SELECT 1 FROM pg_depend dep WHERE dep.classid = 'pg_type'::regclass
                   AND dep.objid = t.oid AND dep.deptype = 'e')
UNION ALL
SELECT 'extension', quote_ident(e.extname), e.extversion FROM pg_extension e
 WHERE e.extname <> 'plpgsql'
UNION ALL
SELECT 'policy', quote_ident(po.polname) || ' on ' || po.polrelid::regclass::text,
       format('AS %%s FOR %%s TO %%s',
              CASE WHEN po.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
              CASE po.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE'
                             WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
              (SELECT string_agg(role, ', ' ORDER BY role)
                 FROM (SELECT CASE WHEN r = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r)) END
                         FROM unnest(po.polroles) r) roles (role)))
       || coalesce(' USING ' || pg_get_expr(po.polqual, po.polrelid), '')
       || coalesce(' WITH CHECK ' || pg_get_expr(po.polwithcheck, po.polrelid), '')
  FROM pg_policy po
UNION ALL
SELECT 'rule', quote_ident(r.rulename) || ' on ' || r.ev_class::regclass::text, pg_get_ruledef(r.oid)
  FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE {_USER_NS} AND r.rulename <> '_RETURN'
"""  # noqa: S608


async def snapshot(conn: Conn, tracking: QualifiedName | None = None) -> Snapshot:
    oid = 0
    if tracking is not None:
        row = await (await conn.execute("SELECT coalesce(to_regclass(%s)::oid, 0)",
                                        [tracking.quoted()])).fetchone()
        oid = int(row[0]) if row else 0
    cur = await conn.execute(SNAPSHOT_SQL, {"tracking": oid})
    return {(str(k), str(i)): _canonical(str(k), str(d)) for k, i, d in await cur.fetchall()}


def _canonical(kind: str, definition: str) -> str:
    # Enum definitions are re-encoded by the same function that takes labels
    # out of them (_without_values), so both compare as equal strings.
    return _enum_text(json.loads(definition)) if kind == "enum" else definition


def _enum_text(labels: list[str]) -> str:
    return json.dumps(labels, ensure_ascii=False)


def _enum_labels(definition: str) -> list[str]:
    return [str(label) for label in json.loads(definition)]


def _literal(text: str) -> str:
    """A string as an SQL literal, for messages only (never sent to the server)."""
    return "'" + text.replace("'", "''") + "'"


def _change(before: str, after: str) -> str:
    """``'old' -> 'new'``; for multi-line definitions (functions, views) only the first lines that differ.

    A whole function definition on one line would bury the one clause
    that changed.
    """
    old, new = before.splitlines(), after.splitlines()
    if len(old) > 1 or len(new) > 1:
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
            if tag != "equal":
                gone, came = "\n".join(old[i1:i2]), "\n".join(new[j1:j2])
                return f"line {i1 + 1}: {gone!r} -> {came!r}"
    return f"{before!r} -> {after!r}"


@dataclass(frozen=True)
class Difference:
    version: str
    left_behind: tuple[str, ...]  # objects the down file did not remove
    removed: tuple[str, ...]  # objects that existed before the up and are gone
    changed: tuple[str, ...]  # objects whose definition differs from before the up

    def lines(self) -> list[str]:
        out = [f"  left behind: {x}" for x in self.left_behind]
        out += [f"  removed too much: {x}" for x in self.removed]
        out += [f"  changed: {x}" for x in self.changed]
        return out


def diff(version: str, before: Snapshot, after: Snapshot) -> Difference | None:
    def name(key: tuple[str, str]) -> str:
        return f"{key[0]} {key[1]}"

    left = tuple(name(k) for k in sorted(after.keys() - before.keys()))
    removed = tuple(name(k) for k in sorted(before.keys() - after.keys()))
    changed = tuple(f"{name(k)}: {_change(before[k], after[k])}"
                    for k in sorted(before.keys() & after.keys()) if before[k] != after[k])
    if not (left or removed or changed):
        return None
    return Difference(version, left, removed, changed)


def _touched(a: Snapshot, b: Snapshot) -> set[tuple[str, str]]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


def down_difference(version: str, before_up: Snapshot, after_up: Snapshot,
                    before_down: Snapshot, after_down: Snapshot) -> Difference | None:
    """What the down of ``version`` got wrong: ``after_down`` against ``before_up``.

    Only objects that its up or its down changed are judged.  An object
    neither of them changed is still as the downs run before (those of later
    versions) left it, so a difference there is theirs and was reported
    against them; judging it again would blame this version for it (a column
    a later down forgot, "removed too much" once this down drops its table).
    """
    judged = _touched(before_up, after_up) | _touched(before_down, after_down)
    return diff(version, {k: v for k, v in before_up.items() if k in judged},
                {k: v for k, v in after_down.items() if k in judged})


@dataclass(frozen=True)
class Irreversible:
    """An enum value an up added with ``ALTER TYPE ... ADD VALUE``: no down can take it out."""

    version: str
    enum: str  # as format_type() shows it
    label: str

    def line(self) -> str:
        return (f"irreversible: ALTER TYPE {self.enum} ADD VALUE {_literal(self.label)} "
                f"(up of {self.version}; PostgreSQL cannot remove an enum value)")


EnumValues = set[tuple[str, str]]  # (enum as format_type() shows it, label)


async def added_enum_values(conn: Conn, parsed: ParsedFile) -> EnumValues:
    """The ``ALTER TYPE ... ADD VALUE`` statements of an up file, resolved right after it ran.

    Taken from the parse tree, not from the schema: an up that recreates the
    type with one more value can be undone by its down, so keeping that value
    is the down's fault; only ADD VALUE has no inverse in PostgreSQL.
    """
    found: EnumValues = set()
    for st in parsed.statements:
        node = st.node
        if not (isinstance(node, ast.AlterEnumStmt) and node.newVal and node.oldVal is None):
            continue  # (oldVal is RENAME VALUE, which a down can rename back)
        parts = [str(part.sval) for part in node.typeName or ()]
        # Resolved with this session's search_path, the default one the
        # runner's session has too (an up that SETs its own is not followed:
        # its values are then reported as the down's, as any other change).
        name = sql.Identifier(*parts).as_string(conn)
        cur = await conn.execute("SELECT format_type(to_regtype(%s), NULL)", [name])
        row = await cur.fetchone()
        if row is not None and row[0] is not None:
            found.add((str(row[0]), str(node.newVal)))
    return found


def irreversible(version: str, added: EnumValues, before_up: Snapshot,
                 after_down: Snapshot) -> list[Irreversible]:
    """The values ``added`` by the up that are still there after the down, in a type older than the up.

    (A type the up created and the down left behind is reported as left
    behind instead: dropping it would have been possible.)
    """
    out = []
    for enum, label in sorted(added):
        key = ("enum", enum)
        if (key in before_up and key in after_down and label in _enum_labels(after_down[key])
                and label not in _enum_labels(before_up[key])):
            out.append(Irreversible(version, enum, label))
    return out


def _without_values(snap: Snapshot, values: EnumValues) -> Snapshot:
    """``snap`` as if ``values`` had never been added: they are accepted, not differences."""
    out = dict(snap)
    for enum, label in values:
        key = ("enum", enum)
        if key in out:
            out[key] = _enum_text([x for x in _enum_labels(out[key]) if x != label])
    return out


@dataclass
class CycleReport:
    applied: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    reapplied: list[str] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    irreversible: list[Irreversible] = field(default_factory=list)
    reapply_difference: Difference | None = None
    reapply_error: str | None = None

    @property
    def ok(self) -> bool:
        # Irreversible statements are reported but fail nothing: no down
        # file could do better.
        return not self.differences and self.reapply_difference is None and not self.reapply_error

    def difference_lines(self) -> list[str]:
        lines = []
        for d in self.differences:
            lines.append(f"down of {d.version} did not restore the schema:")
            lines += d.lines()
        return lines


async def _create_scratch(admin_dsn: str) -> tuple[str, str]:
    name = f"pgonline_migrate_test_{secrets.token_hex(4)}"
    conn = await connect(admin_dsn)
    try:
        # template0: a pristine database, so the "empty start" snapshot holds
        # nothing a site-specific template1 would have added.
        await conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege:
        raise MigrationError("cannot create a scratch database: permission denied",
                             hint="use a role with CREATEDB, or omit --dsn to use an embedded "
                             "PostgreSQL") from None
    finally:
        await conn.close()
    return name, with_database(admin_dsn, name)


async def _drop_scratch(admin_dsn: str, name: str) -> None:
    with anyio.CancelScope(shield=True):
        conn = await connect(admin_dsn)
        try:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = %s AND pid <> pg_backend_pid()", [name])
            await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
        finally:
            await conn.close()


async def run_test_cycle(directory: Path, dsn: str | None, *, out: Callable[[str], None] = print,
                         table: QualifiedName | None = None) -> CycleReport:
    """Run the up → down → up cycle on a scratch database; raise MigrationError on differences."""
    migrations = discovery.load(directory)
    if not migrations:
        raise MigrationError(f"{directory}: no migrations to test")
    ups: dict[str, ParsedFile] = {}
    for m in migrations:  # syntax errors first, before any server is involved
        ups[m.version] = parse_text(m.up_source(), m.up)
        if m.down is not None:
            parse_text(m.down_source() or "", m.down)
    server = None
    if dsn is None:
        from pgonline.devtools.local_server import start_embedded

        out("starting an embedded PostgreSQL for the test ...")
        server = await anyio.to_thread.run_sync(start_embedded)
        dsn = server.dsn
    try:
        name, scratch = await _create_scratch(dsn)
        out(f"scratch database {name}")
        try:
            report = await _cycle(directory, scratch, migrations, ups, out, table)
        finally:
            await _drop_scratch(dsn, name)
    finally:
        if server is not None:
            await anyio.to_thread.run_sync(server.stop)
    if not report.ok:
        lines = report.difference_lines()
        if report.reapply_difference is not None:
            lines.append("re-applying after the downs gave a different schema:")
            lines += report.reapply_difference.lines()
        if report.reapply_error is not None:
            lines.append(f"re-applying after the downs failed: {report.reapply_error}")
        lines += [i.line() for i in report.irreversible]
        raise MigrationError("migration test failed:\n" + "\n".join(lines),
                             hint="fix the down file(s) so they remove exactly what their up creates")
    return report


async def _cycle(directory: Path, scratch: str, migrations: list[discovery.Migration],
                 ups: dict[str, ParsedFile], out: Callable[[str], None],
                 table: QualifiedName | None) -> CycleReport:
    tracking = table or QualifiedName(None, "schema_migrations")
    quiet: Callable[[str], None] = lambda _: None  # noqa: E731
    opts = RunnerOptions(dsn=scratch, table=tracking, out=quiet, lock_wait_s=0)
    report = CycleReport()
    conn = await connect(scratch)
    try:
        snaps = [await snapshot(conn, tracking)]
        added: list[EnumValues] = []
        async with Runner(directory, opts) as runner:
            for m in migrations:
                try:
                    await runner.up(1)
                except PgOnlineError as exc:
                    raise type(exc)(f"up of {m.version} failed: {exc.message}", hint=exc.hint) from exc
                report.applied.append(m.version)
                snaps.append(await snapshot(conn, tracking))
                added.append(await added_enum_values(conn, ups[m.version]))
            out(f"up: applied {len(report.applied)} migration(s)")
            await _roll_back(runner, conn, tracking, migrations, snaps, added, report, out)
            out(f"down: rolled back {len(report.rolled_back)} migration(s)")
            try:
                report.reapplied = await runner.up()
            except PgOnlineError as exc:
                report.reapply_error = exc.message
                return report
            out(f"up again: applied {len(report.reapplied)} migration(s)")
            if not report.differences:
                # (With leftovers the re-applied schema differs for reasons
                # already reported.)
                report.reapply_difference = diff("re-apply", snaps[-1], await snapshot(conn, tracking))
    finally:
        await conn.close()
    return report


async def _roll_back(runner: Runner, conn: Conn, tracking: QualifiedName,
                     migrations: list[discovery.Migration], snaps: list[Snapshot],
                     added: list[EnumValues], report: CycleReport, out: Callable[[str], None]) -> None:
    """Every down, newest first; each judged against the snapshot before its own up (snaps[i - 1])."""
    before_down = snaps[-1]
    accepted: EnumValues = set()  # irreversible enum values found so far
    for i in range(len(migrations), 0, -1):
        m = migrations[i - 1]
        try:
            await runner.down(1)
        except PgOnlineError as exc:
            raise _down_failed(m.version, exc, report) from exc
        report.rolled_back.append(m.version)
        after_down = await snapshot(conn, tracking)
        for item in irreversible(m.version, added[i - 1], snaps[i - 1], after_down):
            report.irreversible.append(item)
            accepted.add((item.enum, item.label))
            out(item.line())
        after_down = _without_values(after_down, accepted)
        d = down_difference(m.version, snaps[i - 1], snaps[i], before_down, after_down)
        if d is not None:
            report.differences.append(d)
            out(f"down of {m.version}: schema differs from before its up")
        before_down = after_down


def _down_failed(version: str, exc: PgOnlineError, report: CycleReport) -> PgOnlineError:
    """The down's error, with what the downs run before it got wrong.

    A later version's down that removed too much (its table, say) makes a
    correct earlier down fail; the failure alone would blame the wrong file.
    """
    lines = report.difference_lines()
    if not lines:
        return type(exc)(f"down of {version} failed: {exc.message}", hint=exc.hint)
    return type(exc)(f"down of {version} failed: {exc.message}\n"
                     "a likely cause, found earlier in the test:\n" + "\n".join(lines),
                     hint="fix the down file(s) above first: this down may fail only because of them")
