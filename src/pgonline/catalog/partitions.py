"""The partition tree of a partitioned table (read-only): its partitions, leaf or not, and keys.

A partitioned table holds no rows itself; its partitions do, and a partition
may itself be partitioned (sub-partitioning).  The strategies that work on a
partitioned table walk this tree: an index is built on each *leaf* and
attached to the partitioned index of its direct parent, which is why every
node records its parent; a unique index must contain the partition key
columns of every partitioned level, which is why those are recorded too.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg import sql

from pgonline.connection import Conn
from pgonline.sql.render import render


@dataclass(frozen=True)
class Partition:
    """One partition below the root (a leaf table, or a partitioned table itself)."""

    oid: int
    schema: str
    name: str
    parent_schema: str
    parent_name: str
    level: int  # 1 for the root's own partitions
    kind: str  # pg_class.relkind: 'r' a table, 'p' partitioned, 'f' a foreign table
    # For a partitioned partition: its own partition key (columns; expressions flagged).
    key_columns: tuple[str, ...] = ()
    key_has_expressions: bool = False

    @property
    def is_leaf(self) -> bool:
        return self.kind != "p"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def display(self) -> str:
        return render(self.ident)

    @property
    def parent_display(self) -> str:
        return render(sql.Identifier(self.parent_schema, self.parent_name))


@dataclass(frozen=True)
class PartitionTree:
    """The root's partition key and every partition below it, parents before their children."""

    key_columns: tuple[str, ...]
    key_has_expressions: bool
    partitions: tuple[Partition, ...]

    @property
    def leaves(self) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions if p.is_leaf)

    @property
    def intermediates(self) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions if not p.is_leaf)

    def children(self, schema: str, name: str) -> tuple[Partition, ...]:
        return tuple(p for p in self.partitions
                     if (p.parent_schema, p.parent_name) == (schema, name))

    def key_columns_of_every_level(self) -> tuple[tuple[str, ...], bool]:
        """All partition key columns of the root and its partitioned partitions, and
        whether any level's key has an expression."""
        cols = list(self.key_columns)
        expr = self.key_has_expressions
        for p in self.intermediates:
            cols += [c for c in p.key_columns if c not in cols]
            expr = expr or p.key_has_expressions
        return tuple(cols), expr


_TREE = """
SELECT c.oid, n.nspname, c.relname, pn.nspname, pc.relname, t.level, c.relkind::text,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                   FROM pg_partitioned_table pt
                  CROSS JOIN unnest(pt.partattrs::int2[]) WITH ORDINALITY AS k(attnum, ord)
                   JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = k.attnum
                  WHERE pt.partrelid = c.oid AND k.attnum <> 0), '{}'),
       coalesce((SELECT 0 = ANY(pt.partattrs::int2[]) FROM pg_partitioned_table pt
                  WHERE pt.partrelid = c.oid), false)
  FROM pg_partition_tree(%s::oid) t
  JOIN pg_class c ON c.oid = t.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class pc ON pc.oid = t.parentrelid
  LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
 ORDER BY t.level, n.nspname, c.relname
"""


async def partition_tree(conn: Conn, table_oid: int) -> PartitionTree:
    """The tree below partitioned table ``table_oid``, in depth-first order (parents first)."""
    cur = await conn.execute(_TREE, [table_oid])
    rows = await cur.fetchall()
    root_cols: tuple[str, ...] = ()
    root_expr = False
    nodes: list[Partition] = []
    for oid, schema, name, pschema, pname, level, kind, cols, expr in rows:
        if int(level) == 0:
            root_cols, root_expr = tuple(cols), bool(expr)
            continue
        nodes.append(Partition(oid=int(oid), schema=str(schema), name=str(name),
                               parent_schema=str(pschema), parent_name=str(pname),
                               level=int(level), kind=str(kind), key_columns=tuple(cols),
                               key_has_expressions=bool(expr)))
    ordered: list[Partition] = []

    def walk(schema: str, name: str) -> None:
        for p in nodes:
            if (p.parent_schema, p.parent_name) == (schema, name):
                ordered.append(p)
                walk(p.schema, p.name)

    root = next((r for r in rows if int(r[5]) == 0), None)
    if root is not None:
        walk(str(root[1]), str(root[2]))
    return PartitionTree(key_columns=root_cols, key_has_expressions=root_expr,
                         partitions=tuple(ordered))
