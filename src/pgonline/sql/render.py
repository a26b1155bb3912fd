"""The one way composed SQL becomes text: plans and messages store rendered SQL."""

from __future__ import annotations

from psycopg import sql


def render(q: sql.Composable) -> str:
    """``q`` as SQL text, identifiers already quoted by psycopg; needs no connection.

    Plans are data (journaled as JSON), so every statement is rendered once,
    at planning, and run later exactly as stored.
    """
    return q.as_string(None)
