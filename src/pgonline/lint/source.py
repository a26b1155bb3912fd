"""A migration file as a sequence of located statements.

Statements are parsed by PostgreSQL's own parser (pglast) and located by the
parser's ``stmt_location``/``stmt_len`` offsets, so each finding can point to
``file:line:column``.  A syntax error must not hide the rest of the file: when
the whole file does not parse, it is split at top-level semicolons with the
PostgreSQL *lexer* (which knows quotes, dollar quotes and comments) and each
piece is parsed alone; the pieces that fail become :class:`BrokenStatement`.

Inline suppressions are comments, found with the same lexer:
``-- pgonline:ignore code[, code]`` applies to the statement that follows it
(or contains it); ``-- pgonline:ignore-file code`` applies to the whole file.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from pglast import parse_sql
from pglast.parser import ParseError

from pgonline.lint.names import TableRef
from pgonline.lint.tokens import Token, error_offset, lex

IGNORE = "pgonline:ignore"
IGNORE_FILE = "pgonline:ignore-file"


@dataclass(frozen=True)
class Statement:
    """One parsed statement; node locations are relative to ``base``."""

    node: Any
    start: int
    end: int
    base: int

    def offset_of(self, node: Any) -> int:
        """Absolute offset of a sub-node (falls back to the statement start)."""
        location = getattr(node, "location", None)
        if isinstance(location, int) and location >= 0:
            return self.base + location
        return self.start


@dataclass(frozen=True)
class BrokenStatement:
    """A piece of the file PostgreSQL cannot parse (it would fail when run)."""

    start: int
    end: int
    error_offset: int
    message: str
    help: str
    created_table: TableRef | None


Item = Statement | BrokenStatement


@dataclass(frozen=True)
class IgnoreComment:
    offset: int
    codes: tuple[str, ...]
    whole_file: bool


@dataclass
class ParsedFile:
    path: str
    text: str
    items: list[Item]
    ignores: list[IgnoreComment]
    item_ignores: dict[int, set[str]] = field(default_factory=dict)
    file_ignores: set[str] = field(default_factory=set)
    _line_starts: list[int] = field(default_factory=list)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        if not self._line_starts:
            # str.find walks the text in C; a Python loop over every character
            # cost a tenth of the rules' time on the 1,500-file benchmark.
            starts, find = [0], self.text.find
            at = find("\n")
            while at >= 0:
                starts.append(at + 1)
                at = find("\n", at + 1)
            self._line_starts = starts
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def suppressed(self, index: int, code: str) -> bool:
        return code in self.file_ignores or code in self.item_ignores.get(index, set())


def _chunks(text: str, tokens: list[Token], lexer_error: int | None) -> list[tuple[int, int]]:
    """(start, end) of each top-level statement, split at semicolons outside parentheses.

    Semicolons inside a ``BEGIN ATOMIC ... END`` function body do not end the
    statement.  psql meta-commands (``\\set ON_ERROR_STOP on``) run in psql, not
    in the server; they end at the end of their line and are skipped.
    """
    chunks: list[tuple[int, int]] = []
    depth = atomic = 0
    first: Token | None = None
    last: Token | None = None
    skip_until = -1
    previous = ""
    for tok in tokens:
        if tok.is_comment or tok.start < skip_until:
            continue
        if tok.name == "ASCII_92" and first is None:
            newline = text.find("\n", tok.start)
            skip_until = len(text) if newline < 0 else newline
            continue
        if tok.name == "ASCII_59" and depth == 0 and atomic == 0:
            if first is not None and last is not None:
                chunks.append((first.start, last.end))
            first = last = None
            continue
        if tok.name == "ASCII_40":
            depth += 1
        elif tok.name == "ASCII_41":
            depth = max(0, depth - 1)
        elif (tok.name == "ATOMIC" and previous == "BEGIN_P") or (tok.name == "CASE" and atomic):
            atomic += 1
        elif tok.name == "END_P" and atomic:
            atomic -= 1
        previous = tok.name
        first = first or tok
        last = tok
    if lexer_error is not None:
        start = first.start if first is not None else lexer_error
        chunks.append((start, len(text)))
    elif first is not None and last is not None:
        chunks.append((first.start, last.end))
    return chunks


def _first_token_at(tokens: list[Token], starts: list[int], offset: int) -> int:
    i = bisect.bisect_left(starts, offset)
    while i < len(tokens) and tokens[i].is_comment:
        i += 1
    return tokens[i].start if i < len(tokens) else offset


def _parse_whole(text: str, tokens: list[Token]) -> list[Item]:
    starts = [t.start for t in tokens]
    items: list[Item] = []
    for raw in parse_sql(text):
        loc = raw.stmt_location or 0
        end = loc + raw.stmt_len if raw.stmt_len else len(text)
        items.append(Statement(raw.stmt, _first_token_at(tokens, starts, loc), end, 0))
    return items


def _parse_pieces(text: str, tokens: list[Token], lexer_error: int | None) -> list[Item]:
    items: list[Item] = []
    for start, end in _chunks(text, tokens, lexer_error):
        piece = text[start:end]
        try:
            raws = parse_sql(piece)
        except ParseError as exc:
            at = start + error_offset(exc, len(piece))
            piece_tokens = [t for t in tokens if start <= t.start < end and not t.is_comment]
            # Loaded on the first syntax error only: most runs meet none.
            from pgonline.lint import syntax_help

            diagnosis = syntax_help.diagnose(text, piece_tokens, at, str(exc.args[0]))
            items.append(BrokenStatement(start, end, at, diagnosis.message, diagnosis.help,
                                         diagnosis.created_table))
            continue
        for raw in raws:
            loc = raw.stmt_location or 0
            stmt_end = start + loc + raw.stmt_len if raw.stmt_len else end
            items.append(Statement(raw.stmt, start + loc, stmt_end, start))
    return items


def _ignore_comments(text: str, tokens: list[Token]) -> list[IgnoreComment]:
    found: list[IgnoreComment] = []
    for tok in tokens:
        if not tok.is_comment:
            continue
        body = text[tok.start:tok.end]
        body = body[2:] if body.startswith("--") else body[2:-2]
        body = body.strip()
        whole_file = body.startswith(IGNORE_FILE)
        if not whole_file and not body.startswith(IGNORE):
            continue
        rest = body[len(IGNORE_FILE if whole_file else IGNORE):]
        codes = tuple(c for c in rest.replace(",", " ").split() if c)
        found.append(IgnoreComment(tok.start, codes, whole_file))
    return found


# What PostgreSQL's lexer skips between tokens (scan.l's ``space``).
_SPACE = frozenset(" \t\n\r\f\v")


def _parse_comment_free(text: str) -> list[Item] | None:
    """The statements of a file that has no comments and parses whole, or None.

    Such a file needs no lexer pass (a fifth of the parse time): there are no
    suppressions to find, and each statement starts where the parser says,
    since its ``stmt_location`` is the offset of the statement's first token
    (with no comment in between to step over).  A comment starts with ``--``
    or ``/*``; when either appears anywhere, even inside a string, or when a
    location is not at a token, the file takes the lexer's path.
    """
    if "--" in text or "/*" in text:
        return None
    items: list[Item] = []
    for raw in parse_sql(text):
        loc = raw.stmt_location or 0
        if loc >= len(text) or text[loc] in _SPACE:
            return None
        end = loc + raw.stmt_len if raw.stmt_len else len(text)
        items.append(Statement(raw.stmt, loc, end, 0))
    return items


def parse_file(path: str, text: str) -> ParsedFile:
    try:
        comment_free = _parse_comment_free(text)
    except ParseError:
        # The file has no comment and does not parse (a lexer error is a
        # parse error too): it is parsed in pieces, as below.
        tokens, lexer_error = lex(text)
        items = _parse_pieces(text, tokens, lexer_error)
        return _with_ignores(ParsedFile(path, text, items, _ignore_comments(text, tokens)))
    if comment_free is not None:
        return ParsedFile(path, text, comment_free, [])
    tokens, lexer_error = lex(text)
    if lexer_error is None:
        try:
            items = _parse_whole(text, tokens)
        except ParseError:
            items = _parse_pieces(text, tokens, None)
    else:
        items = _parse_pieces(text, tokens, lexer_error)
    return _with_ignores(ParsedFile(path, text, items, _ignore_comments(text, tokens)))


def _with_ignores(parsed: ParsedFile) -> ParsedFile:
    """Attach each ``pgonline:ignore`` comment to its statement (or to the whole file)."""
    items = parsed.items
    for comment in parsed.ignores:
        if comment.whole_file:
            parsed.file_ignores.update(comment.codes)
            continue
        # A comment applies to the first statement that ends after it: the one
        # it precedes, or the one it sits inside (a multi-line ALTER TABLE).
        for index, item in enumerate(items):
            if item.end > comment.offset:
                parsed.item_ignores.setdefault(index, set()).update(comment.codes)
                break
    return parsed
