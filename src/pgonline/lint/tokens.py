"""PostgreSQL lexer tokens (pglast's ``scan``), the only way the linter looks at raw text.

Parsing is always done by pglast; the lexer is used where the parser cannot
help: to split a file that does not parse into statements, to find comments
(suppressions), and to explain a syntax error around its position.
"""

from __future__ import annotations

from typing import NamedTuple

from pglast.parser import ParseError, scan

from pgonline.lint.names import TableRef


class Token(NamedTuple):
    # A tuple, not a frozen dataclass: a file has a token per word, and a
    # tuple is built in two thirds of the time (8 ms less on 1,500 files).
    start: int
    end: int  # exclusive
    name: str
    kind: str

    @property
    def is_comment(self) -> bool:
        return self.name in ("SQL_COMMENT", "C_COMMENT")

    def is_name(self) -> bool:
        """An identifier or a keyword that may be used as one."""
        return self.name == "IDENT" or self.kind in ("UNRESERVED_KEYWORD", "COL_NAME_KEYWORD")


def error_offset(exc: ParseError, length: int) -> int:
    location = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else -1
    return location if 0 <= location <= length else length


def lex(text: str) -> tuple[list[Token], int | None]:
    """Tokens of ``text``; on a lexer error (unterminated quote), those before it and its offset."""
    try:
        return [Token(t.start, t.end + 1, t.name, t.kind) for t in scan(text)], None
    except ParseError as exc:
        at = error_offset(exc, len(text))
        try:
            prefix = [Token(t.start, t.end + 1, t.name, t.kind) for t in scan(text[:at])]
        except ParseError:
            prefix = []
        return prefix, at


def identifier(text: str, token: Token) -> str:
    """The identifier a token spells, folded as PostgreSQL folds it."""
    raw = text[token.start:token.end]
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return raw[1:-1].replace('""', '"')
    return raw.lower()


def qualified_name(text: str, tokens: list[Token], i: int) -> tuple[TableRef | None, int]:
    """Read ``name`` or ``schema.name`` at ``tokens[i]``; return it and the next index."""
    if i >= len(tokens) or not tokens[i].is_name():
        return None, i
    first = identifier(text, tokens[i])
    if i + 2 < len(tokens) and tokens[i + 1].name == "ASCII_46" and tokens[i + 2].is_name():
        return TableRef(first, identifier(text, tokens[i + 2])), i + 3
    return TableRef(None, first), i + 1


def skip(tokens: list[Token], i: int, *names: str) -> int:
    """Advance past any of the given token names (optional keywords)."""
    while i < len(tokens) and tokens[i].name in names:
        i += 1
    return i


def created_table(text: str, tokens: list[Token]) -> TableRef | None:
    """The table a ``CREATE [TEMP|UNLOGGED] TABLE [IF NOT EXISTS] name`` statement creates."""
    if not tokens or tokens[0].name != "CREATE":
        return None
    i = skip(tokens, 1, "GLOBAL", "LOCAL", "TEMP", "TEMPORARY", "UNLOGGED")
    if i >= len(tokens) or tokens[i].name != "TABLE":
        return None
    i = skip(tokens, i + 1, "IF_P", "NOT", "EXISTS")
    return qualified_name(text, tokens, i)[0]


def altered_table(text: str, tokens: list[Token]) -> TableRef | None:
    """The table of ``ALTER TABLE [IF EXISTS] [ONLY] name``."""
    if len(tokens) < 2 or tokens[0].name != "ALTER" or tokens[1].name != "TABLE":
        return None
    i = skip(tokens, 2, "IF_P", "EXISTS", "ONLY")
    return qualified_name(text, tokens, i)[0]
