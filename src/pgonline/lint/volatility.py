"""Is a column DEFAULT evaluated once, or per row?

Since PostgreSQL 11, ``ADD COLUMN ... DEFAULT <expr>`` is a catalog-only
change when ``<expr>`` is not volatile: the value is computed once and stored
as the column's "missing value".  A volatile default (``random()``,
``gen_random_uuid()``, ``clock_timestamp()``, ``nextval()`` from a serial...)
must be computed for every existing row, so the table is rewritten under an
ACCESS EXCLUSIVE lock.  ``now()`` and ``CURRENT_TIMESTAMP`` are STABLE: one
value for the statement, no rewrite.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from pglast import ast

# pg_proc.provolatile = 'v' in every supported release (and common extensions).
VOLATILE = frozenset({
    "random", "random_normal", "setseed", "gen_random_uuid", "uuidv4", "uuidv7",
    "uuid_generate_v1", "uuid_generate_v1mc", "uuid_generate_v4",
    "clock_timestamp", "timeofday", "nextval", "setval", "currval", "lastval",
    "gen_random_bytes", "gen_salt",
    "dblink", "pg_sleep",
})

# Immutable or stable built-ins that commonly appear in defaults.
NOT_VOLATILE = frozenset({
    "now", "transaction_timestamp", "statement_timestamp", "current_timestamp", "current_date",
    "localtimestamp", "timezone", "date_trunc", "to_timestamp", "to_char", "to_date", "make_date",
    "make_timestamp", "make_timestamptz", "make_interval", "lower", "upper", "concat", "concat_ws",
    "coalesce", "nullif", "greatest", "least", "length", "substr", "substring", "trim", "btrim",
    "replace", "md5", "abs", "round", "floor", "ceil", "jsonb_build_object", "json_build_object",
    "jsonb_build_array", "json_build_array", "to_jsonb", "to_json", "array_fill", "inet",
    "current_user", "session_user", "current_setting", "current_schema", "extract", "date_part",
})

SERIAL_TYPES = frozenset({"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"})


class Volatility(Enum):
    NONE = "not volatile"
    VOLATILE = "volatile"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class DefaultVolatility:
    volatility: Volatility
    culprit: Any = None  # the FuncCall node that decides it
    name: str = ""


def function_calls(node: Any) -> Iterator[ast.FuncCall]:
    if isinstance(node, ast.FuncCall):
        yield node
    if isinstance(node, ast.Node):
        for attr in node:
            yield from function_calls(getattr(node, attr))
    elif isinstance(node, tuple | list):
        for item in node:
            yield from function_calls(item)


def function_name(call: ast.FuncCall) -> str:
    names: Any = call.funcname
    return str(names[-1].sval)


def classify(expr: Any, catalog_volatility: Mapping[str, str] | None) -> DefaultVolatility:
    """The volatility of an expression: its most volatile function call."""
    unknown: DefaultVolatility | None = None
    for call in function_calls(expr):
        name = function_name(call)
        known = (catalog_volatility or {}).get(name)
        if known == "v" or (known is None and name in VOLATILE):
            return DefaultVolatility(Volatility.VOLATILE, call, name)
        if known is None and name not in NOT_VOLATILE and unknown is None:
            unknown = DefaultVolatility(Volatility.UNKNOWN, call, name)
    return unknown or DefaultVolatility(Volatility.NONE)
