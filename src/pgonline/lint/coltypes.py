"""Which ``ALTER COLUMN ... TYPE`` changes skip the table rewrite.

PostgreSQL skips rewriting the table (and rebuilding its indexes) only when
the old type is binary-coercible to the new one and no new length check is
needed.  The well-known cases are relaxations: a longer or unlimited
``varchar``, ``varchar`` to ``text``, more ``numeric`` precision with the same
scale, more fractional-second precision, ``cidr`` to ``inet``.  Everything else
(``int`` to ``bigint``, shortening, any ``USING``) rewrites the whole table
under an ACCESS EXCLUSIVE lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

_STRINGS = frozenset({"varchar", "text"})
_PRECISION = frozenset({"timestamp", "timestamptz", "time", "timetz", "interval"})


@dataclass(frozen=True)
class ColType:
    name: str
    mods: tuple[int, ...]
    array: bool

    def __str__(self) -> str:
        mods = f"({', '.join(map(str, self.mods))})" if self.mods else ""
        return f"{self.name}{mods}{'[]' if self.array else ''}"


def from_type_name(type_name: Any) -> ColType | None:
    node: Any = type_name
    if not isinstance(node, ast.TypeName) or not node.names:
        return None
    names = [n.sval for n in node.names]
    if len(names) > 1 and names[0] != "pg_catalog":
        return ColType(".".join(names), (), bool(node.arrayBounds))
    mods: list[int] = []
    for mod in node.typmods or ():
        if not (isinstance(mod, ast.A_Const) and isinstance(mod.val, ast.Integer)):
            return None
        mods.append(int(mod.val.ival or 0))
    return ColType(names[-1], tuple(mods), bool(node.arrayBounds))


def from_text(text: str) -> ColType | None:
    """From ``format_type()`` output such as ``character varying(255)``."""
    try:
        stmts = parse_sql(f"SELECT NULL::{text}")
    except ParseError:
        return None
    stmt: Any = stmts[0].stmt
    value = stmt.targetList[0].val
    return from_type_name(getattr(value, "typeName", None))


def coerce(value: Any) -> ColType | None:
    return from_text(value) if isinstance(value, str) else from_type_name(value)


def rewrite_free(old: ColType, new: ColType) -> bool:
    if old == new:
        return True
    if old.array != new.array:
        return False
    if old.name in _STRINGS and new.name in _STRINGS:
        if new.name == "text" or not new.mods:
            return True  # to text / unlimited varchar
        return old.name == "varchar" and bool(old.mods) and new.mods[0] >= old.mods[0]
    if old.name == new.name == "numeric":
        if not new.mods:
            return True
        if len(old.mods) >= 1 and len(new.mods) >= 1:
            old_scale = old.mods[1] if len(old.mods) > 1 else 0
            new_scale = new.mods[1] if len(new.mods) > 1 else 0
            return new_scale == old_scale and new.mods[0] >= old.mods[0]
        return False
    if old.name == new.name and old.name in _PRECISION | {"varbit", "bit varying"}:
        return not new.mods or (bool(old.mods) and new.mods[0] >= old.mods[0])
    return old.name == "cidr" and new.name == "inet"
