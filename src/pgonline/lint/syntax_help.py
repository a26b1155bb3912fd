"""Explanations for statements PostgreSQL cannot parse.

The parser only says ``syntax error at or near "WHERE"``; migration authors
usually hit a handful of well-known mistakes (MySQL-isms, constraints that
cannot be partial).  These are recognised from the lexer tokens around the
error position and answered with a concrete fix.
"""

from __future__ import annotations

from dataclasses import dataclass

from pgonline.lint.names import TableRef
from pgonline.lint.tokens import Token, altered_table, created_table, identifier, qualified_name, skip

GENERIC_HELP = ("PostgreSQL rejects this statement, so the migration stops here "
                "(and its transaction, if any, rolls back); fix the SQL")


@dataclass(frozen=True)
class Diagnosis:
    message: str
    help: str
    created_table: TableRef | None


def _index_at(tokens: list[Token], offset: int) -> int | None:
    for i, tok in enumerate(tokens):
        if tok.start <= offset < tok.end or tok.start >= offset:
            return i
    return None


def _matching_open(tokens: list[Token], close: int) -> int | None:
    depth = 0
    for i in range(close, -1, -1):
        if tokens[i].name == "ASCII_41":
            depth += 1
        elif tokens[i].name == "ASCII_40":
            depth -= 1
            if depth == 0:
                return i
    return None


def _element_bounds(tokens: list[Token], inside: int) -> tuple[int, int]:
    """First and last index of the comma-separated list element around ``inside``."""
    depth, lo = 0, inside
    while lo > 0:
        name = tokens[lo - 1].name
        if name == "ASCII_41":
            depth += 1
        elif name == "ASCII_40":
            if depth == 0:
                break
            depth -= 1
        elif name == "ASCII_44" and depth == 0:
            break
        lo -= 1
    depth, hi = 0, inside
    while hi + 1 < len(tokens):
        name = tokens[hi + 1].name
        if name == "ASCII_40":
            depth += 1
        elif name == "ASCII_41":
            if depth == 0:
                break
            depth -= 1
        elif name in ("ASCII_44", "ASCII_59") and depth == 0:
            break
        hi += 1
    return lo, hi


def _partial_unique(text: str, tokens: list[Token], i: int, table: TableRef | None,
                    creating: bool) -> Diagnosis | None:
    """``UNIQUE (cols) WHERE pred`` inside CREATE/ALTER TABLE: only an index can be partial."""
    if tokens[i].name != "WHERE" or i < 2 or tokens[i - 1].name != "ASCII_41":
        return None
    open_ = _matching_open(tokens, i - 1)
    if open_ is None or open_ == 0 or tokens[open_ - 1].name not in ("UNIQUE", "KEY", "DISTINCT"):
        return None
    kind = "PRIMARY KEY" if tokens[open_ - 1].name == "KEY" else "UNIQUE"
    lo, hi = _element_bounds(tokens, i)
    name = None
    for j in range(lo, open_):
        if tokens[j].name == "CONSTRAINT" and j + 1 < open_:
            name = identifier(text, tokens[j + 1])
    columns = text[tokens[open_].start:tokens[i - 1].end]
    predicate = text[tokens[i + 1].start:tokens[hi].end] if i + 1 <= hi else "..."
    concurrently = "" if creating else "CONCURRENTLY "
    index = f"{name} " if name else ""
    on = str(table) if table else "<table>"
    fix = f"CREATE UNIQUE INDEX {concurrently}{index}ON {on} {columns} WHERE {predicate}"
    return Diagnosis(
        f'syntax error at or near "WHERE": a {kind} constraint cannot have a WHERE clause',
        f"only an index can be partial; drop the WHERE from the constraint and create a "
        f"partial unique index instead: {fix}",
        table if creating else None,
    )


def _update_limit(text: str, tokens: list[Token], i: int) -> Diagnosis | None:
    verb = tokens[0].name
    if tokens[i].name != "LIMIT" or verb not in ("UPDATE", "DELETE_P"):
        return None
    start = 2 if verb == "DELETE_P" else 1  # DELETE FROM t / UPDATE t
    table, _ = qualified_name(text, tokens, skip(tokens, start, "ONLY"))
    t = str(table) if table else "<table>"
    sql_verb = "UPDATE" if verb == "UPDATE" else "DELETE"
    # Advice text shown to the user, never executed.
    advice = (f"{sql_verb} ... WHERE id IN (SELECT id FROM {t} WHERE <condition> "  # noqa: S608
              f"ORDER BY id LIMIT 10000), repeated until it affects 0 rows")
    return Diagnosis(
        f'syntax error at or near "LIMIT": PostgreSQL has no {sql_verb} ... LIMIT',
        "select each batch by key and commit between batches: " + advice,
        None,
    )


def diagnose(text: str, tokens: list[Token], at: int, message: str) -> Diagnosis:
    """Explain a parse error at offset ``at`` of a statement made of ``tokens``."""
    creating = created_table(text, tokens)
    generic = Diagnosis(message, GENERIC_HELP, creating)
    if not tokens:
        return generic
    if tokens[0].name == "ASCII_92":
        return Diagnosis(f"{message}: psql meta-commands are not SQL",
                         "run the file with psql, or remove the backslash command", creating)
    i = _index_at(tokens, at)
    if i is None:
        return generic
    table = creating or altered_table(text, tokens)
    for found in (_partial_unique(text, tokens, i, table, creating is not None),
                  _update_limit(text, tokens, i)):
        if found is not None:
            return Diagnosis(found.message, found.help, creating)
    return generic
