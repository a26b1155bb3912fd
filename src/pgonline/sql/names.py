"""Names for objects pgonline creates (helper constraints, shadow columns, triggers)."""

from __future__ import annotations

import hashlib
import json

from pgonline.sql.identifiers import MAX_IDENTIFIER_BYTES

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


def _hashed(label: str, key: list[str]) -> str:
    """``<label>_<8 hex>``: the hash over the exact ``key`` tuple, the label cut to fit."""
    # JSON keeps the element boundaries, so ("a_b", "c") and ("a", "b_c") differ.
    digest = hashlib.sha1(json.dumps(key, ensure_ascii=False).encode()).hexdigest()[:_HASH_CHARS]
    head = _truncate_bytes(label, MAX_IDENTIFIER_BYTES - _HASH_CHARS - 1)
    return f"{head}_{digest}"


def _cut_before(name: str, suffix: str) -> str:
    """``<name>_<suffix>`` with ``name`` cut so that the suffix and a hash still fit."""
    room = MAX_IDENTIFIER_BYTES - len(suffix.encode()) - _HASH_CHARS - 2
    return f"{_truncate_bytes(name, room)}_{suffix}"


def helper_name(prefix: str, schema: str, table: str, *parts: str) -> str:
    """A name for a helper object that is unique per (schema, table, parts), ≤ 63 bytes.

    ``derived_name("zz_sync", "a_b", "c")`` and ``derived_name("zz_sync", "a", "b_c")``
    are the same string, so two jobs on different tables would share (and
    replace) one trigger.  Here the readable part is only a label: the hash is
    taken over the exact, unambiguous tuple (JSON keeps the element
    boundaries), so different targets always get different names, and the
    same target always gets the same name (resume depends on that).
    """
    return _hashed("_".join((prefix, table, *parts)), [prefix, schema, table, *parts])


def helper_column_name(role: str, schema: str, table: str, column: str) -> str:
    """``<column>_pgonline_<role>_<hash>``: a helper column next to ``column``, ≤ 63 bytes.

    Shadow and parked columns show up in ``SELECT *``, so the label starts with
    the column they stand for and always keeps ``pgonline_<role>`` (a long
    column name is cut instead); the hash (over role, schema, table and column)
    keeps the name unique per column even when a long column name is cut, and
    makes a clash with an application's own column practically impossible.
    """
    suffix = f"pgonline_{role}"
    return _hashed(_cut_before(column, suffix), [suffix, schema, table, column])


def helper_index_name(role: str, schema: str, index: str, *parts: str) -> str:
    """``<index>_pgonline_<role>_<hash>``: a temporary twin of ``index``, ≤ 63 bytes.

    Index names share the schema's namespace with tables; the hash over
    (role, schema, index, parts) keeps a twin distinct from every other
    relation, including the twin another job builds for the same index.
    """
    suffix = f"pgonline_{role}"
    return _hashed(_cut_before(index, suffix), [suffix, schema, index, *parts])


def partition_index_name(index: str, schema: str, partition: str) -> str:
    """``<partition>_<index>_<hash>``: the index a partition gets as its part of ``index``, ≤ 63 bytes.

    A partitioned index is made of one index per partition, each in its
    partition's schema.  The hash over (index, schema, partition) keeps the
    name distinct from the pieces of every other partitioned index and
    stable across re-runs, so a resumed job finds the piece it built; the
    label carries no ``pgonline`` because the index stays after the job.
    """
    return _hashed(f"{partition}_{index}", ["partition_index", schema, partition, index])
