"""``online migrate create``: the next numbered up/down pair with the seed's header."""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pgonline.errors import UsageError
from pgonline.migrations import discovery
from pgonline.migrations.discovery import Style

DEFAULT_WIDTH = 3
_SNAKE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")


@dataclass(frozen=True)
class NewMigration:
    up: Path
    down: Path | None  # dbmate: None, both sections are in the up file
    up_text: str
    down_text: str


def snake_name(name: str) -> str:
    """``Add user photos`` / ``add-user-photos`` → ``add_user_photos``; refuse anything else."""
    cleaned = re.sub(r"[\s\-]+", "_", name.strip()).lower()
    if not _SNAKE.match(cleaned):
        raise UsageError(f"migration name {name!r} is not snake_case",
                         hint="letters, digits and single underscores, e.g. add_user_photos")
    return cleaned


def default_author() -> str:
    for var in ("GIT_AUTHOR_NAME", "USER", "LOGNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def plan_new(directory: Path, name: str, *, description: str | None = None,
             author: str | None = None, style: Style | None = None,
             timestamp: bool | None = None, today: datetime | None = None,
             dialect: str | None = None) -> NewMigration:
    """The files ``create`` would write (the directory must already follow the convention).

    ``timestamp``: version the file by the UTC time (YYYYMMDDHHMMSS, golang-migrate's
    ``-format``) instead of the next number; None follows the directory.
    ``dialect``: golang-migrate only, the PostgreSQL dialect suffix of the file
    names (``…_name.postgres.up.sql``), for histories that keep one file per
    database; None follows the directory's newest migration.
    """
    existing = discovery.load(directory)
    stem_name = snake_name(name)
    now = today or datetime.now(UTC)
    stamps = (bool(existing) and existing[-1].style is not Style.FLYWAY
              and len(str(existing[-1].number)) >= discovery.TIMESTAMP_DIGITS)
    if timestamp is None:
        # dbmate names its files by timestamp; an empty dbmate directory starts so.
        timestamp = stamps or (not existing and style is Style.DBMATE)
    elif existing and timestamp != stamps:
        raise UsageError(f"{directory} versions its migrations "
                         f"{'by timestamp' if stamps else 'in sequence'}; "
                         f"--{'timestamp' if timestamp else 'seq'} would mix the two")
    if existing:
        last = existing[-1]
        if style is not None and style is not last.style:
            raise UsageError(f"{directory} uses {last.style} naming; --layout {style} would mix "
                             "layouts")
        style = last.style
    style = style or Style.PLAIN
    if dialect is not None and style is not Style.GOLANG:
        raise UsageError(f"--dialect names golang-migrate files; {style} files have no dialect",
                         hint="--layout golang-migrate --dialect postgres")
    if dialect is None and existing and style is Style.GOLANG:
        dialect = discovery.golang_dialect(existing[-1].up.name)
    if dialect is not None and dialect.lower() not in discovery.POSTGRES_DIALECTS:
        raise UsageError(f"--dialect {dialect} is not PostgreSQL's",
                         hint=f"one of {', '.join(discovery.POSTGRES_DIALECTS)}")
    if style is Style.FLYWAY:
        if timestamp:
            raise UsageError("Flyway versions are numbers (V1, V1.1, V2); --timestamp does not "
                             "apply")
        return _flyway_files(directory, existing, stem_name, now, author, description)
    if timestamp:
        number = int(now.strftime("%Y%m%d%H%M%S"))
        width = 14
        if existing and number <= existing[-1].number:
            number = existing[-1].number + 1  # two files in one second keep their order
    elif existing:
        number, width = existing[-1].number + 1, existing[-1].width
        if len(str(number)) > width:
            raise UsageError(f"next number {number} does not fit the directory's {width}-digit width")
    else:
        number, width = 1, 6 if style is Style.GOLANG else DEFAULT_WIDTH
    stem = f"{number:0{width}d}_{stem_name}"
    up_text, down_text = _texts(stem, stem_name, now, author, description)
    # The dialect is part of the file names, not of the version (the stem).
    up_name, down_name = style.file_names(f"{stem}.{dialect}" if dialect else stem)
    if style is Style.DBMATE:
        return NewMigration(directory / up_name, None,
                            f"-- migrate:up\n{up_text}\n-- migrate:down\n{down_text}", "")
    return NewMigration(directory / up_name, directory / down_name, up_text, down_text)


def _flyway_files(directory: Path, existing: list[discovery.Migration], stem_name: str,
                  now: datetime, author: str | None, description: str | None) -> NewMigration:
    """``V{n}__{name}.sql`` + ``U{n}__{name}.sql``, n one more than the newest major version."""
    major = max((int((m.label or "0").split(".")[0]) for m in existing), default=0) + 1
    stem = f"V{major}__{stem_name}"
    up_name, down_name = Style.FLYWAY.file_names(stem)
    up_text, down_text = _texts(stem, stem_name, now, author, description)
    return NewMigration(directory / up_name, directory / down_name, up_text, down_text)


def _texts(stem: str, stem_name: str, now: datetime, author: str | None,
           description: str | None) -> tuple[str, str]:
    date = now.strftime("%Y-%m-%d")
    who = author or default_author()
    desc = description or stem_name.replace("_", " ")
    up_text = (
        f"-- Migration: {stem}\n"
        f"-- Description: {desc}\n"
        f"-- Author: {who}\n"
        f"-- Date: {date}\n"
        "--\n"
        "-- `online migrate up` runs this file in one transaction together with its\n"
        "-- tracking row: no BEGIN/COMMIT needed.  Statements that cannot run in a\n"
        "-- transaction (CREATE INDEX CONCURRENTLY ...) make it run statement by statement.\n"
        "\n"
    )
    down_text = (
        f"-- Migration Rollback: {stem}\n"
        f"-- Description: undo {desc}\n"
        f"-- Author: {who}\n"
        f"-- Date: {date}\n"
        "--\n"
        "-- Must remove everything the up file creates: `online migrate test` checks it.\n"
        "\n"
    )
    return up_text, down_text


def write_new(new: NewMigration) -> None:
    files = [(new.up, new.up_text)] + ([(new.down, new.down_text)] if new.down else [])
    for path, text in files:
        try:
            # "x": never overwrite a file that appeared meanwhile.
            with path.open("x", encoding="utf-8") as fh:
                fh.write(text)
        except FileExistsError:
            raise UsageError(f"{path} already exists") from None
