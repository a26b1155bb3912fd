"""Finding migrations in a directory and enforcing the naming convention.

Four layouts are understood (one per directory, detected from the files):

* the seed's ``NNN_description.sql`` with ``NNN_description_down.sql``:
  numbers zero-padded to one consistent width of at least three digits,
  snake_case descriptions;
* golang-migrate's ``{version}_{title}.up.sql`` / ``.down.sql`` as that tool
  accepts them: any number of digits (timestamps included), any title (dots
  and dashes too), and an optional dialect before ``.up``/``.down``
  (``…_name.postgres.up.sql``, as ory/popx writes them): the PostgreSQL file
  is chosen, the dialect-less one is the fallback, other dialects' files are
  ignored;
* dbmate's ``{version}_{name}.sql``, one file holding a ``-- migrate:up``
  section and an optional ``-- migrate:down`` section;
* Flyway's ``V{version}__{description}.sql`` with its undo file
  ``U{version}__{description}.sql``; dotted versions (``V1.2.3__x.sql``, or
  ``V1_2_3``) sort part by part.  Repeatable ``R__`` files are ignored, with
  a warning: Flyway re-runs them on every change, pgonline does not.

Problems (``online migrate validate``, and every command refuses them): a
name no layout accepts, duplicate versions, a down file without its up, two
layouts mixed.  Warnings (reported, never refused): a missing down file
(``migrate down`` past such a version refuses and changes nothing), and gaps
in a sequential numbering, computed from the sorted versions (never from a
range: timestamp versions are not sequential).  All are collected and
reported together, so one run shows everything to fix.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pgonline.errors import MigrationError

MIN_WIDTH = 3
# Versions of this many digits or more are timestamps (unix seconds, YYYYMMDDHHMMSS, ...):
# not a sequence, so no gap in them means anything.
TIMESTAMP_DIGITS = 10
_SNAKE = r"[a-z0-9]+(?:_[a-z0-9]+)*"
# The dialect suffixes of golang-migrate style histories (popx, gobuffalo/fizz).
POSTGRES_DIALECTS = ("postgres", "postgresql", "pg")
OTHER_DIALECTS = ("mysql", "mariadb", "sqlite", "sqlite3", "cockroach", "cockroachdb", "crdb",
                  "mssql", "sqlserver", "spanner", "clickhouse", "redshift", "snowflake",
                  "oracle")
_DIALECT = "|".join((*POSTGRES_DIALECTS, *OTHER_DIALECTS))
_DBMATE_UP = re.compile(r"^--\s*migrate:up\b.*$", re.MULTILINE)
_DBMATE_DOWN = re.compile(r"^--\s*migrate:down\b.*$", re.MULTILINE)
_FLYWAY = re.compile(r"^(?P<kind>[VU])(?P<ver>\d+(?:[._]\d+)*)__(?P<name>.+)\.sql$")
_FLYWAY_REPEATABLE = re.compile(r"^R__.+\.sql$")
# A Flyway version's parts, each in this many digits, form one integer, so
# dotted versions compare as the integers do (1.2 < 1.10 < 2) and fit the
# runner's numbering; four parts at most.
FLYWAY_PART_DIGITS = 20
FLYWAY_PARTS = 4
_GOLANG = re.compile(rf"^(?P<num>\d+)_(?P<name>.+?)(?:\.(?P<dialect>{_DIALECT}))?"
                     rf"\.(?P<dir>up|down)\.sql$", re.IGNORECASE)
_PLAIN = re.compile(rf"^(?P<num>\d+)_(?P<name>{_SNAKE})\.sql$")
_LOOSE = re.compile(r"^(?P<num>\d+)[_-](?P<rest>.+)\.sql$", re.IGNORECASE)


class Style(StrEnum):
    PLAIN = "plain"  # 001_name.sql + 001_name_down.sql
    GOLANG = "golang"  # 001_name.up.sql + 001_name.down.sql
    DBMATE = "dbmate"  # 20240101120000_name.sql with -- migrate:up / -- migrate:down
    FLYWAY = "flyway"  # V1.2__name.sql + U1.2__name.sql

    def file_names(self, stem: str) -> tuple[str, str]:
        if self is Style.GOLANG:
            return f"{stem}.up.sql", f"{stem}.down.sql"
        if self is Style.DBMATE:
            return f"{stem}.sql", f"{stem}.sql (its -- migrate:down section)"
        if self is Style.FLYWAY:
            return f"{stem}.sql", f"U{stem[1:]}.sql"
        return f"{stem}.sql", f"{stem}_down.sql"


# The names users give the layouts (--layout), and the older --style names.
LAYOUTS = {"seed": Style.PLAIN, "plain": Style.PLAIN, "golang-migrate": Style.GOLANG,
           "golang": Style.GOLANG, "dbmate": Style.DBMATE, "flyway": Style.FLYWAY}


@dataclass(frozen=True)
class Migration:
    number: int  # the order (Flyway: its dotted version as one integer, see flyway_number)
    name: str  # snake_case description
    width: int
    up: Path
    down: Path | None  # dbmate: the same file, when it has a down section
    style: Style
    label: str | None = None  # Flyway: the version as written ("1.2.3")

    @property
    def version(self) -> str:
        """The tracking key: the seed's ``006_add_user_photos`` (the up file's stem)."""
        return self.stem

    @property
    def stem(self) -> str:
        if self.style is Style.FLYWAY:
            return f"V{self.label}__{self.name}"
        return f"{self.number:0{self.width}d}_{self.name}"

    def up_source(self) -> str:
        """The SQL of the up migration (dbmate: the file, its down section blanked)."""
        text = read_text(self.up)
        return dbmate_section(text, up=True) if self.style is Style.DBMATE else text

    def down_source(self) -> str | None:
        if self.down is None:
            return None
        text = read_text(self.down)
        return dbmate_section(text, up=False) if self.style is Style.DBMATE else text

    def checksum(self) -> str:
        if self.style is Style.DBMATE:
            # The applied part only: editing or adding a down section does not
            # modify what ran (the blank lines that keep line numbers do not count).
            return hashlib.sha256(self.up_source().strip().encode()).hexdigest()
        return file_checksum(self.up)


def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def dbmate_section(text: str, *, up: bool) -> str:
    """One section of a dbmate file, the rest blanked line for line.

    Keeping every newline keeps every statement's line number, so errors
    point into the file as it is.
    """
    up_m, down_m = _DBMATE_UP.search(text), _DBMATE_DOWN.search(text)
    marker, other = (up_m, down_m) if up else (down_m, up_m)
    if marker is None:
        return _blank(text)
    start = marker.end()
    end = other.start() if other is not None and other.start() > start else len(text)
    return _blank(text[:start]) + text[start:end] + _blank(text[end:])


def golang_dialect(file_name: str) -> str | None:
    """The dialect suffix of a golang-migrate file name (``postgres`` in ``1_a.postgres.up.sql``)."""
    m = _GOLANG.match(file_name)
    return m.group("dialect") if m is not None else None


def dbmate_parts(text: str) -> tuple[str, str] | None:
    """A dbmate file's up and down migrations as ``online lint`` judges them, or None.

    None unless the file has both markers.  Each part keeps the whole file's
    lines, the other part's blanked, so positions are those of the file; the
    up part also keeps what precedes ``-- migrate:up`` (a header, a
    ``-- pgonline:ignore-file`` comment).
    """
    up, down = _DBMATE_UP.search(text), _DBMATE_DOWN.search(text)
    if up is None or down is None:
        return None
    if down.start() < up.start():
        return dbmate_section(text, up=True), dbmate_section(text, up=False)
    cut = down.start()
    return text[:cut] + _blank(text[cut:]), _blank(text[:cut]) + text[cut:]


def _blank(part: str) -> str:
    return "\n" * part.count("\n")


def flyway_number(version: str) -> int:
    """``1.2.3`` (or ``1_2_3``) as one integer that orders like the version."""
    parts = [int(p) for p in re.split(r"[._]", version)]
    if len(parts) > FLYWAY_PARTS or any(len(str(p)) > FLYWAY_PART_DIGITS for p in parts):
        raise MigrationError(f"Flyway version {version} has more than {FLYWAY_PARTS} parts "
                             f"or a part longer than {FLYWAY_PART_DIGITS} digits")
    parts += [0] * (FLYWAY_PARTS - len(parts))
    number = 0
    for p in parts:
        number = number * 10**FLYWAY_PART_DIGITS + p
    return number


def file_checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    path: Path
    number: int
    digits: str
    name: str
    down: bool
    style: Style
    dialect: str | None = None  # golang-migrate style: "postgres", or None for every dialect
    label: str | None = None  # Flyway: the version as written


def _classify(path: Path) -> _Entry | str:
    """A recognised file, or the reason its name breaks the convention."""
    fname = path.name
    if m := _FLYWAY.match(fname):
        label = m["ver"].replace("_", ".")
        return _Entry(path, flyway_number(label), m["ver"], m["name"], m["kind"] == "U",
                      Style.FLYWAY, label=label)
    if m := _GOLANG.match(fname):
        dialect = m["dialect"].lower() if m["dialect"] else None
        return _Entry(path, int(m["num"]), m["num"], m["name"], m["dir"].lower() == "down",
                      Style.GOLANG, dialect)
    if fname.endswith((".up.sql", ".down.sql")):
        return "golang-migrate files are {version}_{title}.up.sql / .down.sql"
    if (m := _LOOSE.match(fname)) and _DBMATE_UP.search(read_text(path)):
        # dbmate: one file per version, its sections marked by comments.
        return _Entry(path, int(m["num"]), m["num"], m["rest"], False, Style.DBMATE)
    if m := _PLAIN.match(fname):
        # The seed's convention: a trailing ``_down`` marks the rollback file.
        name = m["name"]
        down = name.endswith("_down") and name != "down"
        return _Entry(path, int(m["num"]), m["num"], name[:-5] if down else name, down, Style.PLAIN)
    if re.match(r"^\d+_?\.sql$", fname):
        return "missing description after the number"
    if not fname[:1].isdigit():
        return "missing number: name it NNN_description.sql (e.g. 006_add_user_photos.sql)"
    if m := _LOOSE.match(fname):
        rest = m["rest"]
        if "-" in fname:
            return "use underscores, not dashes (006_add_photos.sql, not 006-add-photos.sql)"
        if rest != rest.lower():
            return "description must be lower-case snake_case"
    return "not NNN_snake_case_description.sql (letters, digits and single underscores only)"


def discover(directory: Path, layout: Style | None = None) -> tuple[list[Migration], list[str]]:
    """All migrations of ``directory`` in order, plus every naming problem found.

    ``layout`` forces one layout (``--layout``): a file named for another is a problem.
    """
    if not directory.is_dir():
        raise MigrationError(f"{directory}: not a directory")
    problems: list[str] = []
    entries: list[_Entry] = []
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.suffix.lower() != ".sql":
            continue
        if path.suffix != ".sql":
            problems.append(f"{path.name}: the extension must be lower-case .sql")
            continue
        if _FLYWAY_REPEATABLE.match(path.name):
            continue  # reported by warnings(): Flyway re-runs them, we do not
        got = _classify(path)
        if not isinstance(got, str) and layout is not None and got.style is not layout:
            got = f"not a {layout_name(layout)} file name (--layout {layout_name(layout)})"
        if isinstance(got, str):
            problems.append(f"{path.name}: {got}")
        elif got.dialect is None or got.dialect in POSTGRES_DIALECTS:
            entries.append(got)  # another database's file: not ours to run
    entries = _prefer_postgres(entries)
    if not entries:
        return [], problems

    styles = {e.style for e in entries}
    if len(styles) > 1:
        problems.append("mixed naming styles: use either NNN_name.sql + NNN_name_down.sql "
                        "or NNN_name.up.sql + NNN_name.down.sql in one directory")
    # Zero-padding to one width is the seed's convention; golang-migrate has none.
    plain = [e for e in entries if e.style is Style.PLAIN]
    width = max((len(e.digits) for e in plain), default=0)
    for e in plain:
        if len(e.digits) < MIN_WIDTH:
            problems.append(f"{e.path.name}: number not zero-padded to at least {MIN_WIDTH} digits "
                            f"(006_add_photos.sql, not 6_add_photos.sql)")
        elif len(e.digits) != width:
            problems.append(f"{e.path.name}: number has {len(e.digits)} digits, others have "
                            f"{width}: use one width for all files")

    ups: dict[int, list[_Entry]] = {}
    downs: dict[int, list[_Entry]] = {}
    for e in entries:
        (downs if e.down else ups).setdefault(e.number, []).append(e)
    for number, group in sorted(ups.items()):
        if len(group) > 1:
            problems.append(f"duplicate number {number}: " + ", ".join(g.path.name for g in group))
    for number, group in sorted(downs.items()):
        if len(group) > 1:
            problems.append(f"duplicate number {number} among down files: "
                            + ", ".join(g.path.name for g in group))

    migrations: list[Migration] = []
    for number, group in sorted(ups.items()):
        up = group[0]
        if up.style is Style.DBMATE:
            has_down = dbmate_section(read_text(up.path), up=False).strip() != ""
            migrations.append(Migration(number, up.name, len(up.digits), up.path,
                                        up.path if has_down else None, up.style))
            continue
        down_group = downs.get(number, [])
        down = next((d for d in down_group if d.name == up.name and d.style is up.style), None)
        if down is None and down_group:
            stem = f"V{up.digits}__{up.name}" if up.style is Style.FLYWAY \
                else f"{up.digits}_{up.name}"
            expected = up.style.file_names(stem)[1]
            problems.append(f"{up.path.name}: down file {down_group[0].path.name} does not "
                            f"match the up file's name (expected {expected})")
        migrations.append(Migration(number, up.name, len(up.digits), up.path,
                                    down.path if down else None, up.style, up.label))
    for number, group in sorted(downs.items()):
        if number not in ups:
            problems.append(f"{group[0].path.name}: down migration without an up migration")

    return migrations, problems


def _prefer_postgres(entries: list[_Entry]) -> list[_Entry]:
    """Per version and direction, the PostgreSQL dialect's file over the dialect-less one."""
    chosen: dict[tuple[int, bool, Style], _Entry] = {}
    rest: list[_Entry] = []
    for e in entries:
        if e.style is not Style.GOLANG:
            rest.append(e)
            continue
        key = (e.number, e.down, e.style)
        other = chosen.get(key)
        if other is None or (other.dialect is None and e.dialect is not None):
            chosen[key] = e
        elif (other.dialect is None) == (e.dialect is None):
            rest.append(e)  # a real duplicate: reported as such
    return sorted([*rest, *chosen.values()], key=lambda e: (e.number, e.down, e.path.name))


def warnings(migrations: list[Migration], directory: Path | None = None) -> list[str]:
    """What is worth knowing but does not stop a run: missing downs, gaps in a sequence."""
    out = [f"{m.up.name}: no down migration ({m.style.file_names(m.stem)[1]}); "
           f"`migrate down` past {m.version} will refuse" for m in migrations if m.down is None]
    if directory is not None:
        out += [f"{p.name}: ignored: a Flyway repeatable migration (R__) is not run"
                for p in sorted(directory.glob("R__*.sql"))]
    numbers = sorted({m.number for m in migrations})
    if any(m.style is Style.FLYWAY for m in migrations) or \
            any(len(str(n)) >= TIMESTAMP_DIGITS for n in numbers):
        return out  # Flyway or timestamp versions: not a sequence
    width = max((m.width for m in migrations), default=0)
    holes = [(a + 1, b - 1) for a, b in itertools.pairwise(numbers) if b - a > 1]
    if holes:
        shown = ", ".join(f"{lo:0{width}d}" if lo == hi else f"{lo:0{width}d}-{hi:0{width}d}"
                          for lo, hi in holes[:10])
        out.append(f"gap in the numbering: no migration {shown}"
                   + (" ..." if len(holes) > 10 else ""))
    return out


def layout_name(style: Style) -> str:
    return next(name for name, s in LAYOUTS.items() if s is style)


def load(directory: Path, layout: Style | None = None) -> list[Migration]:
    """The migrations of ``directory``, or MigrationError listing every naming problem."""
    migrations, problems = discover(directory, layout)
    if problems:
        raise MigrationError(
            f"{directory}: {len(problems)} naming problem(s):\n  " + "\n  ".join(problems),
            hint="run `online migrate validate DIR` after fixing; see docs/migrations.md",
        )
    return migrations


def directory_style(directory: Path) -> Style | None:
    migrations, _ = discover(directory)
    return migrations[-1].style if migrations else None
