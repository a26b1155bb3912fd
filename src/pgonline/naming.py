"""Names for objects pgonline creates (helper constraints, shadow columns, triggers)."""

from __future__ import annotations

import hashlib
import json

from pgonline.identifiers import MAX_IDENTIFIER_BYTES

_HASH_CHARS = 8


def _truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def derived_name(prefix: str, *parts: str) -> str:
    """``prefix_part1_part2``, shortened with a stable hash when over 63 bytes.

    PostgreSQL would silently truncate a longer name, and two truncated names
    could then collide; the hash keeps them distinct and deterministic, which
    the journal relies on when a job is resumed.
    """
    name = "_".join((prefix, *parts))
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:_HASH_CHARS]
    head = _truncate_bytes(name, MAX_IDENTIFIER_BYTES - _HASH_CHARS - 1)
    return f"{head}_{digest}"


def helper_name(prefix: str, schema: str, table: str, *parts: str) -> str:
    """A name for a helper object that is unique per (schema, table, parts), ≤ 63 bytes.

    ``derived_name("zz_sync", "a_b", "c")`` and ``derived_name("zz_sync", "a", "b_c")``
    are the same string, so two jobs on different tables would share (and
    replace) one trigger.  Here the readable part is only a label: the hash is
    taken over the exact, unambiguous tuple (JSON keeps the element
    boundaries), so different targets always get different names, and the
    same target always gets the same name (resume depends on that).
    """
    key = json.dumps([prefix, schema, table, *parts], ensure_ascii=False)
    digest = hashlib.sha1(key.encode()).hexdigest()[:_HASH_CHARS]
    label = "_".join((prefix, table, *parts))
    head = _truncate_bytes(label, MAX_IDENTIFIER_BYTES - _HASH_CHARS - 1)
    return f"{head}_{digest}"
