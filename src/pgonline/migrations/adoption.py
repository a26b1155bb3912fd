"""``online migrate adopt``: continue a history another runner applied, without re-applying it.

What each tool leaves in the database, and how it is read:

* golang-migrate: ``schema_migrations(version bigint, dirty boolean)``, one
  row, the newest applied version: every migration up to it is applied.
* dbmate: ``schema_migrations(version varchar PRIMARY KEY)``, one row per
  applied version.
* Flyway: ``flyway_schema_history``, one row per run; versioned rows with
  ``success`` are applied, an undo (``UNDO_SQL``) removes its version again.
* the seed's ``schema_migrations(version text, applied_at)``: already ours
  (``migrate up`` adopts it in place; adopting it records nothing).

A dirty (golang-migrate) or failed (Flyway) state is refused with the
command that repairs it: the database may hold half a migration, and
recording it as applied would hide that.  Every applied version must have
its file in the directory.  Our rows go into the tracking table, in one
transaction: when golang-migrate or dbmate own ``schema_migrations``, into
:data:`ADOPTED_TABLE` (the ``migrate`` commands find it there by themselves),
so the other tool's table stays exactly as it was and switching back is
possible.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgonline.connection import Conn
from pgonline.errors import MigrationError
from pgonline.migrations.discovery import Migration, flyway_number
from pgonline.migrations.tracking import DEFAULT_TABLE, Tracker
from pgonline.sql.identifiers import QualifiedName

ADOPTED_TABLE = "pgonline_schema_migrations"


@dataclass(frozen=True)
class Foreign:
    """Another tool's record of what is applied."""

    tool: str  # "golang-migrate", "dbmate", "flyway", "seed"
    table: QualifiedName
    numbers: frozenset[int]  # applied versions, as discovery numbers them
    newest: int | None = None  # golang-migrate: the one version it records


async def _columns(conn: Conn, table: QualifiedName) -> dict[str, str] | None:
    cur = await conn.execute(
        """SELECT a.attname, format_type(a.atttypid, NULL) FROM pg_attribute a
            WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped""",
        [table.quoted()])
    rows = await cur.fetchall()
    return {str(r[0]): str(r[1]) for r in rows} or None


def foreign_shape(cols: dict[str, str] | None) -> str | None:
    """Which tool's ``schema_migrations`` these columns are (None: none, or ours/the seed's)."""
    if cols is None:
        return None
    if cols.get("version") == "bigint" and "dirty" in cols and "applied_at" not in cols:
        return "golang-migrate"
    if set(cols) == {"version"} and cols["version"] in ("character varying", "text"):
        return "dbmate"
    return None


async def tracking_table(conn: Conn, given: QualifiedName, *, explicit: bool) -> QualifiedName:
    """The table to track in: ``given``, or the adopted one when another tool owns the default."""
    if explicit or given != QualifiedName(None, DEFAULT_TABLE):
        return given
    if foreign_shape(await _columns(conn, given)) is None:
        return given
    adopted = QualifiedName(None, ADOPTED_TABLE)
    return adopted if await _columns(conn, adopted) is not None else given


async def read_foreign(conn: Conn, tool: str | None) -> Foreign:
    """The other tool's state (``tool`` None: detected), or MigrationError if there is none."""
    default = QualifiedName(None, DEFAULT_TABLE)
    shape = foreign_shape(await _columns(conn, default))
    flyway = QualifiedName(None, "flyway_schema_history")
    if tool in (None, "flyway") and await _columns(conn, flyway) is not None:
        return await _read_flyway(conn, flyway)
    if tool in (None, "golang-migrate") and shape == "golang-migrate":
        return await _read_golang(conn, default)
    if tool in (None, "dbmate") and shape == "dbmate":
        cur = await conn.execute(sql.SQL("SELECT version FROM {}").format(default.ident()))
        numbers = frozenset(int(str(r[0])) for r in await cur.fetchall()
                            if str(r[0]).isdigit())
        return Foreign("dbmate", default, numbers)
    if tool in (None, "seed") and await _columns(conn, default) is not None:
        return Foreign("seed", default, frozenset())
    raise MigrationError(
        f"no {tool or 'migration tool'}'s tracking table found in this database",
        hint="golang-migrate and dbmate keep schema_migrations, Flyway flyway_schema_history")


async def _read_golang(conn: Conn, table: QualifiedName) -> Foreign:
    cur = await conn.execute(sql.SQL("SELECT version, dirty FROM {}").format(table.ident()))
    rows = await cur.fetchall()
    if len(rows) > 1:
        raise MigrationError(f"{table} has {len(rows)} rows; golang-migrate keeps exactly one")
    if not rows:
        return Foreign("golang-migrate", table, frozenset(), None)
    version, dirty = int(rows[0][0]), bool(rows[0][1])
    if dirty:
        raise MigrationError(
            f"golang-migrate left version {version} dirty: it failed midway",
            hint=f"repair the schema by hand, then `migrate -path DIR -database URL force "
                 f"{version}` (if it is fully applied) or `force <the version before>`; then "
                 f"adopt again")
    return Foreign("golang-migrate", table, frozenset(), version)


async def _read_flyway(conn: Conn, table: QualifiedName) -> Foreign:
    cur = await conn.execute(sql.SQL(
        "SELECT version, type, success FROM {} WHERE version IS NOT NULL"
        " ORDER BY installed_rank").format(table.ident()))
    applied: set[int] = set()
    for version, kind, success in await cur.fetchall():
        if not success:
            raise MigrationError(
                f"Flyway recorded version {version} as failed",
                hint="repair the schema, then `flyway repair` (removes the failed row); "
                     "then adopt again")
        number = flyway_number(str(version))
        if str(kind).upper().startswith("UNDO"):
            applied.discard(number)
        else:
            applied.add(number)
    return Foreign("flyway", table, frozenset(applied))


def applied_migrations(foreign: Foreign, migrations: list[Migration]) -> list[Migration]:
    """The directory's migrations the other tool applied; MigrationError if a file is missing."""
    known = {m.number: m for m in migrations}
    if foreign.newest is not None:  # golang-migrate: everything up to its version
        if foreign.newest not in known:
            raise MigrationError(f"golang-migrate is at version {foreign.newest}, which has no "
                                 "file in the directory",
                                 hint="adopt from the directory (and branch) that was applied")
        return [m for m in migrations if m.number <= foreign.newest]
    missing = sorted(n for n in foreign.numbers if n not in known)
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise MigrationError(f"{foreign.tool} applied versions with no file in the directory: "
                             f"{shown}", hint="adopt from the directory that was applied")
    return [m for m in migrations if m.number in foreign.numbers]


def target_table(foreign: Foreign, given: QualifiedName, *, explicit: bool) -> QualifiedName:
    """Where our rows go: ``given``, unless the other tool's own table has that name."""
    if explicit or foreign.table != given or foreign.tool in ("seed", "flyway"):
        return given
    return QualifiedName(None, ADOPTED_TABLE)


async def record(tracker: Tracker, applied: list[Migration]) -> list[str]:
    """Record ``applied`` as applied and clean, with today's checksums of their files."""
    have = {a.version for a in await tracker.rows()}
    done: list[str] = []
    for m in applied:
        if m.version not in have:
            await tracker.record(m.version, m.checksum(), None)
            done.append(m.version)
    return done

