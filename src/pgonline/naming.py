"""Names for objects pgonline creates (helper constraints, shadow columns, triggers)."""

from __future__ import annotations

import hashlib

from pgonline.identifiers import MAX_IDENTIFIER_BYTES


def derived_name(prefix: str, *parts: str) -> str:
    """``prefix_part1_part2``, shortened with a stable hash when over 63 bytes.

    PostgreSQL would silently truncate a longer name, and two truncated names
    could then collide; the hash keeps them distinct and deterministic, which
    the journal relies on when a job is resumed.
    """
    name = "_".join((prefix, *parts))
    if len(name.encode()) <= MAX_IDENTIFIER_BYTES:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    head = name.encode()[: MAX_IDENTIFIER_BYTES - 9].decode(errors="ignore")
    return f"{head}_{digest}"
