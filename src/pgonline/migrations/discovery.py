"""Finding migrations in a directory and enforcing the naming convention.

Two layouts are understood (one per directory):

* the seed's ``NNN_description.sql`` with ``NNN_description_down.sql``;
* golang-migrate's ``NNN_description.up.sql`` / ``NNN_description.down.sql``.

The rules (``online migrate validate``): numbers are zero-padded to one
consistent width of at least three digits, descriptions are snake_case, the
numbers form a sequence without gaps or duplicates, and every up file has its
down file (and every down file its up).  All problems are collected and
reported together, so one run shows everything to fix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pgonline.errors import MigrationError

MIN_WIDTH = 3
_SNAKE = r"[a-z0-9]+(?:_[a-z0-9]+)*"
_GOLANG = re.compile(rf"^(?P<num>\d+)_(?P<name>{_SNAKE})\.(?P<dir>up|down)\.sql$")
_PLAIN = re.compile(rf"^(?P<num>\d+)_(?P<name>{_SNAKE})\.sql$")
_LOOSE = re.compile(r"^(?P<num>\d+)[_-](?P<rest>.+)\.sql$", re.IGNORECASE)


class Style(StrEnum):
    PLAIN = "plain"  # 001_name.sql + 001_name_down.sql
    GOLANG = "golang"  # 001_name.up.sql + 001_name.down.sql

    def file_names(self, stem: str) -> tuple[str, str]:
        if self is Style.GOLANG:
            return f"{stem}.up.sql", f"{stem}.down.sql"
        return f"{stem}.sql", f"{stem}_down.sql"


@dataclass(frozen=True)
class Migration:
    number: int
    name: str  # snake_case description
    width: int
    up: Path
    down: Path | None
    style: Style

    @property
    def version(self) -> str:
        """The tracking key: the seed's ``006_add_user_photos`` (the up file's stem)."""
        return f"{self.number:0{self.width}d}_{self.name}"

    def checksum(self) -> str:
        return file_checksum(self.up)


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


def _classify(path: Path) -> _Entry | str:
    """A recognised file, or the reason its name breaks the convention."""
    fname = path.name
    if m := _GOLANG.match(fname):
        return _Entry(path, int(m["num"]), m["num"], m["name"], m["dir"] == "down", Style.GOLANG)
    if fname.endswith((".up.sql", ".down.sql")):
        return "golang-migrate files are NNN_snake_case_name.up.sql / .down.sql"
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


def discover(directory: Path) -> tuple[list[Migration], list[str]]:
    """All migrations of ``directory`` in order, plus every naming problem found."""
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
        got = _classify(path)
        if isinstance(got, str):
            problems.append(f"{path.name}: {got}")
        else:
            entries.append(got)
    if not entries:
        return [], problems

    styles = {e.style for e in entries}
    if len(styles) > 1:
        problems.append("mixed naming styles: use either NNN_name.sql + NNN_name_down.sql "
                        "or NNN_name.up.sql + NNN_name.down.sql in one directory")
    widths = {len(e.digits) for e in entries}
    width = max(widths)
    for e in entries:
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
        down_group = downs.get(number, [])
        down = next((d for d in down_group if d.name == up.name and d.style is up.style), None)
        if down is None:
            expected = up.style.file_names(f"{up.digits}_{up.name}")[1]
            if down_group:
                problems.append(f"{up.path.name}: down file {down_group[0].path.name} does not "
                                f"match the up file's name (expected {expected})")
            else:
                problems.append(f"{up.path.name}: missing down migration {expected}")
        migrations.append(Migration(number, up.name, len(up.digits), up.path,
                                    down.path if down else None, up.style))
    for number, group in sorted(downs.items()):
        if number not in ups:
            problems.append(f"{group[0].path.name}: down migration without an up migration")

    numbers = sorted(ups)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers)) if numbers else []
    if missing:
        shown = ", ".join(f"{n:0{width}d}" for n in missing[:10])
        problems.append(f"gap in the numbering: no migration {shown}"
                        + (" ..." if len(missing) > 10 else ""))
    return migrations, problems


def load(directory: Path) -> list[Migration]:
    """The migrations of ``directory``, or MigrationError listing every naming problem."""
    migrations, problems = discover(directory)
    if problems:
        raise MigrationError(
            f"{directory}: {len(problems)} naming problem(s):\n  " + "\n  ".join(problems),
            hint="run `online migrate validate DIR` after fixing; see docs/migrations.md",
        )
    return migrations


def directory_style(directory: Path) -> Style | None:
    migrations, _ = discover(directory)
    return migrations[-1].style if migrations else None
