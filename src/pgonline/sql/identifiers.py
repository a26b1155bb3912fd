"""Parsing of user-supplied names into safe, structured identifiers.

Names on the command line follow the same rules as ``pg_dump -t``: unquoted
parts are folded to lower case (ASCII letters only, as the server does),
double-quoted parts are kept exactly (with ``""`` as an escaped quote).  The
result is only ever rendered through :class:`psycopg.sql.Identifier`, so no
name can change the shape of a statement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from pgonline.errors import UsageError
from pgonline.sql.render import render

# PostgreSQL's downcase_identifier folds only ASCII A-Z in a multi-byte encoding
# (UTF-8): an unquoted ÄBC names the column "Äbc", not "äbc".
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_unquoted(name: str) -> str:
    """An unquoted identifier as the server stores it: ASCII letters lowered, nothing else."""
    return name.translate(_ASCII_LOWER)


# What PostgreSQL accepts as an unquoted identifier (letters include non-ASCII).
_UNQUOTED = re.compile(r"[^\W\d][\w$]*")

# PostgreSQL truncates identifiers longer than NAMEDATALEN-1 bytes silently;
# refusing them up front avoids creating an object under a different name.
MAX_IDENTIFIER_BYTES = 63


def _split_name(text: str) -> list[str]:
    parts: list[str] = []
    i = 0
    n = len(text)
    while True:
        if i < n and text[i] == '"':
            i += 1
            buf: list[str] = []
            while True:
                if i >= n:
                    raise UsageError(f"unterminated quoted identifier in {text!r}")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(text[i])
                i += 1
            part = "".join(buf)
        else:
            j = text.find(".", i)
            raw = text[i:] if j < 0 else text[i:j]
            if '"' in raw:
                raise UsageError(f"misplaced double quote in {text!r}")
            part = fold_unquoted(raw.strip())
            if part and not _UNQUOTED.fullmatch(part):
                # Like psql: anything but a plain name must be double-quoted, so a
                # typo or an injection attempt fails loudly instead of naming an object.
                raise UsageError(
                    f"{raw.strip()!r} is not a valid unquoted identifier",
                    hint=f"double-quote it to use it as a name, e.g. '\"{raw.strip()}\"'",
                )
            i = n if j < 0 else j
        if not part:
            raise UsageError(f"empty identifier in {text!r}")
        parts.append(identifier(part))
        if i >= n:
            return parts
        if text[i] != ".":
            raise UsageError(f"unexpected text after identifier in {text!r}")
        i += 1


def identifier(name: str) -> str:
    """``name``, already parsed (folded or quoted), if PostgreSQL keeps it as it is."""
    if not name:
        raise UsageError("empty identifier")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise UsageError(
            f"identifier {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes;"
            " PostgreSQL would silently truncate it"
        )
    return name


def parse_identifier(text: str) -> str:
    """Parse a single (unqualified) identifier such as a column name."""
    parts = _split_name(text)
    if len(parts) != 1:
        raise UsageError(f"{text!r} must be a plain name, not a qualified one")
    return parts[0]


@dataclass(frozen=True, order=True)
class QualifiedName:
    """A relation name; ``schema`` is ``None`` until resolved against search_path."""

    schema: str | None
    name: str

    @classmethod
    def parse(cls, text: str) -> QualifiedName:
        parts = _split_name(text)
        if len(parts) == 1:
            return cls(None, parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise UsageError(f"{text!r} has too many dotted parts (expected [schema.]name)")

    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name) if self.schema is None else sql.Identifier(
            self.schema, self.name
        )

    def quoted(self) -> str:
        """The name as PostgreSQL would print it (for messages and regclass input)."""
        return render(self.ident())

    def __str__(self) -> str:
        return self.quoted()
