"""Composing queries that both quote identifiers and take parameters.

psycopg reads every ``%`` of a parameterized query as the start of a
placeholder, including a ``%`` inside a quoted identifier (``"a%sb"``) or a
user expression (``id % 7``, ``LIKE '%@%'``).  Queries built here mark their
parameters with :data:`PARAM` (a NUL character, which can never occur in
PostgreSQL SQL text), and :func:`with_params` doubles every other ``%`` before
turning the markers into ``%s``.
"""

from __future__ import annotations

from psycopg import sql

from pgonline.sql.render import render

_MARK = "\x00"
PARAM = sql.SQL(_MARK)


def with_params(query: sql.Composable) -> sql.SQL:
    """Render ``query`` for execution with positional parameters at each :data:`PARAM`."""
    text = render(query)
    return sql.SQL(text.replace("%", "%%").replace(_MARK, "%s"))
