"""``online migrate up --online``: statements that become staged online changes.

A *recogniser* looks at one parsed statement (pglast's AST, never text) and,
when a pgonline command reaches exactly the same schema more safely, returns
a :class:`Rewrite` that runs that command function instead.  Recognisers are
registered with ``@recogniser(plan_fn)``, the planner of the strategy they map
to.  Anything no recogniser claims runs exactly as written.  The registry:

==================================================  ==========================================
statement                                           becomes
==================================================  ==========================================
``ALTER TABLE t ADD COLUMN ...``                    add-column
``CREATE [UNIQUE] INDEX [CONCURRENTLY] ...``        add-index (plain keys), or the statement
                                                    itself ``CONCURRENTLY`` as one journaled
                                                    step (opclass, INCLUDE, DESC, ...)
``DROP INDEX [IF EXISTS] i``                        drop-index
``ALTER TABLE t ALTER COLUMN c SET NOT NULL``       set-not-null
``ALTER TABLE t ADD CONSTRAINT n CHECK (...)``      add-check
``ALTER TABLE t ADD ... FOREIGN KEY ...``           add-foreign-key
``ALTER TABLE t ADD ... UNIQUE / PRIMARY KEY``      add-unique / add-primary-key
==================================================  ==========================================

A rewritten statement runs as its own pgonline job (journaled, resumable,
with lock_timeout and retries), so the file it came from can no longer be
one transaction: the runner runs the file's other statements in order
(consecutive ordinary statements grouped in one transaction) and marks the
version dirty while it is in progress.  Statements on tables created earlier
in the same run are never rewritten (:class:`RewriteScope`).
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pglast import ast, enums
from pglast.stream import RawStream
from psycopg import sql

from pgonline.catalog.partitions import PartitionTree
from pgonline.connection import connection
from pgonline.engine.change import ChangeOutcome, RunContext, plan_and_run, run_change
from pgonline.engine.plan import Plan
from pgonline.errors import CatalogError
from pgonline.migrations.splitting import Statement
from pgonline.registry import Change, PlanFn, kind_of
from pgonline.sql import expressions
from pgonline.sql.identifiers import QualifiedName, identifier
from pgonline.sql.names import derived_name
from pgonline.sql.render import render
from pgonline.strategies._ddl import refuse_build_in_progress
from pgonline.strategies._partitioned_index import piece_name, refuse_foreign_partitions
from pgonline.strategies.add_check import AddCheckArgs, plan_add_check
from pgonline.strategies.add_column import AddColumnArgs, plan_add_column
from pgonline.strategies.add_foreign_key import AddForeignKeyArgs, fk_change, plan_add_foreign_key
from pgonline.strategies.add_index import AddIndexArgs, index_change, plan_add_index
from pgonline.strategies.add_primary_key import pk_name, plan_add_primary_key
from pgonline.strategies.add_unique import AddUniqueArgs, default_unique_name, key_change, plan_add_unique
from pgonline.strategies.create_index import CreateIndexArgs, CreateIndexFacts, plan_create_index
from pgonline.strategies.drop_index import DropIndexArgs, plan_drop_index
from pgonline.strategies.set_not_null import SetNotNullArgs, plan_set_not_null


@dataclass(frozen=True)
class Rewrite:
    """What replaces one statement: a command run with the runner's RunContext."""

    command: str  # the pgonline command it becomes, e.g. "add-column"
    summary: str  # one line for dry runs and logs
    run: Callable[[RunContext], Awaitable[ChangeOutcome | None]]
    # The change it runs, built from the statement's parse tree when it runs
    # (bad input fails at the statement's turn, as the statement itself would).
    change: Callable[[], Change[Any]] | None = None


Recogniser = Callable[[ast.Node], Rewrite | None]
_RECOGNISERS: dict[str, Recogniser] = {}


def recogniser(planner: PlanFn) -> Callable[[Recogniser], Recogniser]:
    """Register a statement → ``planner``'s change kind mapping (first match wins, in order)."""
    name = kind_of(planner)

    def register(fn: Recogniser) -> Recogniser:
        if name in _RECOGNISERS:
            raise ValueError(f"recogniser {name!r} registered twice")
        _RECOGNISERS[name] = fn
        return fn

    return register


def recognisers() -> dict[str, Recogniser]:
    return dict(_RECOGNISERS)


Guard = Callable[[RunContext], Awaitable[bool]]


def _rewrite(planner: PlanFn, bits: Sequence[str], change: Callable[[], Change[Any]], *,
             skip: Guard | None = None) -> Rewrite:
    """The statement becomes ``online <planner's kind> BITS...``: ``change()``, run.

    ``skip`` answers (and reports) whether the statement's IF [NOT] EXISTS
    makes it a no-op.
    """
    kind = kind_of(planner)

    async def run(ctx: RunContext) -> ChangeOutcome | None:
        if skip is not None and await skip(ctx):
            return None
        return await run_change(ctx, kind, change())

    return Rewrite(kind, " ".join(["online", kind, *bits]), run, change)


def rewrite_for(statement: Statement) -> Rewrite | None:
    for fn in _RECOGNISERS.values():
        found = fn(statement.node)
        if found is not None:
            return found
    return None


def _render(node: ast.Node) -> str:
    text: str = RawStream()(node)
    return text


def _table_name(rel: ast.RangeVar) -> str:
    """The relation quoted, for messages and catalog probes (pglast already folded case)."""
    return _relation(rel).quoted()


def _relation(rel: ast.RangeVar) -> QualifiedName:
    return QualifiedName(None if not rel.schemaname else identifier(str(rel.schemaname)),
                         identifier(str(rel.relname)))


def _q(name: str) -> str:
    return render(sql.Identifier(name))


def _d(name: str) -> str:
    """A name for display: bare when that reads back as the same name."""
    plain = name == name.lower() and name.isascii() and name.isidentifier()
    return name if plain else _q(name)


def _shown(rel: ast.RangeVar) -> str:
    return ".".join(_d(str(p)) for p in (rel.schemaname, rel.relname) if p)


# -- ALTER TABLE t ADD COLUMN c type [NOT NULL] [DEFAULT e] -> online add-column ----------


@recogniser(plan_add_column)
def _add_column(node: ast.Node) -> Rewrite | None:
    if not isinstance(node, ast.AlterTableStmt) or node.objtype is not enums.ObjectType.OBJECT_TABLE:
        return None
    cmds = node.cmds or ()
    # Only a lone ADD COLUMN on a whole inheritance tree (not ONLY) maps onto
    # the command; several sub-commands must stay one statement.
    if len(cmds) != 1 or node.relation is None or not node.relation.inh:
        return None
    cmd = cmds[0]
    if cmd.subtype is not enums.AlterTableType.AT_AddColumn or not isinstance(cmd.def_, ast.ColumnDef):
        return None
    col = cmd.def_
    # pglast spells "no identity / not generated" as a NUL character.
    if col.collClause is not None or col.typeName is None or (col.identity or "\0") != "\0" \
            or (col.generated or "\0") != "\0":
        return None
    not_null = False
    default: ast.Node | None = None
    for con in col.constraints or ():
        if con.contype is enums.ConstrType.CONSTR_NOTNULL:
            not_null = True
        elif con.contype is enums.ConstrType.CONSTR_NULL:
            continue
        elif con.contype is enums.ConstrType.CONSTR_DEFAULT and con.raw_expr is not None:
            default = con.raw_expr
        else:
            return None  # CHECK, REFERENCES, UNIQUE ... : run as written
    relation = node.relation
    table = _table_name(relation)
    type_name = col.typeName
    colname = str(col.colname)

    def change() -> Change[AddColumnArgs]:
        return Change(_relation(relation), AddColumnArgs(
            column=identifier(colname), type_sql=expressions.type_name_of(type_name),
            default=None if default is None else expressions.expression_of(default, "default"),
            not_null=not_null))

    async def skip(ctx: RunContext) -> bool:
        if cmd.missing_ok and await _column_exists(ctx.dsn, table, colname):
            ctx.out(f"column {_q(colname)} already exists in {table}: skipped (IF NOT EXISTS)")
            return True
        return False

    shown = ".".join(p for p in (relation.schemaname, relation.relname) if p)
    bits = [colname, _render(type_name)] + (["NOT NULL"] if not_null else []) + (
        [f"DEFAULT {_render(default)}"] if default is not None else [])
    return _rewrite(plan_add_column, [shown, *bits], change,
                    skip=_either(_table_missing(node, table), skip))


async def _column_exists(dsn: str, table: str, column: str) -> bool:
    async with connection(dsn) as conn:
        cur = await conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s)"
            " AND attname = %s AND attnum > 0 AND NOT attisdropped)", [table, column])
        row = await cur.fetchone()
        return bool(row and row[0])


# -- statements on tables this run created: run as written ---------------------------------


def _key(rel: ast.RangeVar) -> tuple[str | None, str]:
    return (str(rel.schemaname) if rel.schemaname else None, str(rel.relname))


def _same(a: tuple[str | None, str], b: tuple[str | None, str]) -> bool:
    # An unqualified name may resolve to any schema of the search_path, so it
    # matches the qualified one with the same relation name.
    return a[1] == b[1] and (a[0] is None or b[0] is None or a[0] == b[0])


class RewriteScope:
    """What earlier statements of this ``migrate up`` run created.

    A table created by the run is new: no application uses it yet and it
    holds at most what the migration put there.  Rewriting statements on it
    would buy nothing and would split its file into several transactions
    (a rewritten statement is its own job), so they run as written, in the
    file's transaction.  ``CREATE TABLE IF NOT EXISTS`` is not counted: the
    table may be an old, big one.
    """

    def __init__(self) -> None:
        self.tables: list[tuple[str | None, str]] = []
        self.indexes: list[tuple[str | None, str]] = []

    def is_new_table(self, rel: ast.RangeVar | None) -> bool:
        return rel is not None and any(_same(_key(rel), t) for t in self.tables)

    def touches_new(self, node: ast.Node) -> bool:
        if isinstance(node, ast.IndexStmt | ast.AlterTableStmt):
            return self.is_new_table(node.relation)
        if isinstance(node, ast.DropStmt) and node.removeType is enums.ObjectType.OBJECT_INDEX:
            names = [_drop_key(o) for o in node.objects or ()]
            return any(n is not None and any(_same(n, i) for i in self.indexes) for n in names)
        return False

    def note(self, node: ast.Node) -> None:
        if isinstance(node, ast.CreateStmt) and node.relation is not None and not node.if_not_exists:
            self.tables.append(_key(node.relation))
        elif (isinstance(node, ast.CreateTableAsStmt) and node.into is not None
              and node.into.rel is not None and not node.if_not_exists
              and node.objtype is enums.ObjectType.OBJECT_TABLE):
            self.tables.append(_key(node.into.rel))
        elif (isinstance(node, ast.RenameStmt) and node.renameType is enums.ObjectType.OBJECT_TABLE
              and node.newname and self.is_new_table(node.relation)):
            assert node.relation is not None
            self.tables.append((_key(node.relation)[0], str(node.newname)))
        elif isinstance(node, ast.IndexStmt) and node.idxname and self.is_new_table(node.relation):
            assert node.relation is not None
            self.indexes.append((_key(node.relation)[0], str(node.idxname)))

    def rewrites(self, statements: Sequence[Statement]) -> list[Rewrite | None]:
        """The rewrite of each statement (None: run as written), noting what they create."""
        out: list[Rewrite | None] = []
        for s in statements:
            out.append(None if self.touches_new(s.node) else rewrite_for(s))
            self.note(s.node)
        return out


def _drop_key(obj: ast.Node | tuple[ast.Node, ...]) -> tuple[str | None, str] | None:
    parts = [str(p.sval) for p in (obj if isinstance(obj, tuple) else (obj,))
             if isinstance(p, ast.String)]
    if len(parts) == 1:
        return (None, parts[0])
    if len(parts) == 2:
        return (parts[0], parts[1])
    return None


# -- CREATE [UNIQUE] INDEX [CONCURRENTLY] -> online add-index ------------------------------


def _figure_colname(expr: ast.Node | None) -> str:
    """The name PostgreSQL gives an index expression column (FigureIndexColname)."""
    if isinstance(expr, ast.FuncCall) and expr.funcname:
        last = expr.funcname[-1]
        if isinstance(last, ast.String):
            return str(last.sval)
    if isinstance(expr, ast.ColumnRef) and expr.fields and isinstance(expr.fields[-1], ast.String):
        return str(expr.fields[-1].sval)
    return "expr"


def _plain_elem(e: ast.IndexElem) -> bool:
    """A key the add-index command spells exactly: no opclass, collation, ordering, alias."""
    return (e.collation is None and e.opclass is None and e.opclassopts is None
            and e.indexcolname is None
            and e.ordering is enums.SortByDir.SORTBY_DEFAULT
            and e.nulls_ordering is enums.SortByNulls.SORTBY_NULLS_DEFAULT)


def _index_keys(node: ast.IndexStmt) -> tuple[tuple[str, ...], tuple[ast.Node, ...]] | None:
    """(columns, expressions) when the add-index command can build exactly this index."""
    if (node.indexIncludingParams or node.options or node.tableSpace or node.nulls_not_distinct
            or node.excludeOpNames or node.primary or node.isconstraint or node.deferrable):
        return None
    cols: list[str] = []
    exprs: list[ast.Node] = []
    for e in node.indexParams or ():
        if not isinstance(e, ast.IndexElem) or not _plain_elem(e):
            return None
        if e.name is not None:
            if exprs:
                return None  # the command puts column keys first: key order would change
            cols.append(str(e.name))
        elif e.expr is not None:
            exprs.append(e.expr)
        else:
            return None
    return (tuple(cols), tuple(exprs)) if cols or exprs else None


@recogniser(plan_create_index)
def _create_index(node: ast.Node) -> Rewrite | None:
    # ON ONLY a partitioned parent is catalog-only (the index stays invalid
    # until partitions are attached): nothing to make online, run as written.
    if not isinstance(node, ast.IndexStmt) or node.relation is None or not node.relation.inh:
        return None
    table = _table_name(node.relation)
    shown = _shown(node.relation)
    keys = _index_keys(node)
    if keys is None:
        return _create_index_concurrently(node, table)
    cols, exprs = keys
    relation = node.relation
    method = str(node.accessMethod or "btree")
    where = node.whereClause

    def change() -> Change[AddIndexArgs]:
        return index_change(
            _relation(relation), tuple(identifier(c) for c in cols),
            tuple(expressions.expression_of(e, "index expression") for e in exprs),
            name=None if node.idxname is None else identifier(str(node.idxname)),
            unique=bool(node.unique),
            where=None if where is None else expressions.expression_of(where, "WHERE predicate"),
            using=None if method == "btree" else identifier(method))

    async def skip(ctx: RunContext) -> bool:
        if node.if_not_exists and node.idxname and await _index_name_taken(ctx.dsn, table,
                                                                           str(node.idxname)):
            ctx.out(f"relation {_q(str(node.idxname))} already exists: skipped (IF NOT EXISTS)")
            return True
        return False

    bits = [shown, *map(_d, cols), *(f"--expression {_render(e)!r}" for e in exprs)]
    bits += [f"--name {_d(str(node.idxname))}"] if node.idxname else []
    bits += ["--unique"] if node.unique else []
    bits += [f"--using {_d(method)}"] if method != "btree" else []
    bits += [f"--where {_render(where)!r}"] if where is not None else []
    return _rewrite(plan_add_index, bits, change, skip=skip)


async def _index_name_taken(dsn: str, table: str, index: str) -> bool:
    """IF NOT EXISTS: does ``index`` name a relation that is not a failed build on ``table``?

    PostgreSQL skips the statement when any relation of that name exists in
    the table's schema.  The one exception made here is an INVALID index on
    the same table (left by a failed concurrent build): the command drops and
    rebuilds it, which is what the statement was meant to achieve.
    """
    async with connection(dsn) as conn:
        cur = await conn.execute(
            "SELECT NOT (c.relkind = 'i' AND x.indrelid = t.oid AND NOT x.indisvalid)"
            "  FROM pg_class t JOIN pg_class c ON c.relnamespace = t.relnamespace"
            "  LEFT JOIN pg_index x ON x.indexrelid = c.oid"
            " WHERE t.oid = to_regclass(%s) AND c.relname = %s", [table, index])
        row = await cur.fetchone()
        return bool(row and row[0])


def _create_index_concurrently(node: ast.IndexStmt, table: str) -> Rewrite:
    """Fallback for what add-index cannot spell: the statement itself, CONCURRENTLY, journaled.

    The AST is deparsed with ``concurrent = True``, so opclasses, collations,
    INCLUDE, NULLS NOT DISTINCT, ordering and storage parameters are kept
    exactly.  An unnamed index gets PostgreSQL's default name up front so the
    step can recognise its own valid (done) or INVALID (failed, drop and
    retry) index on a re-run or retry.
    """
    concurrent = copy.deepcopy(node)
    concurrent.concurrent = True
    if concurrent.idxname is None:
        parts = [str(e.name) if e.name is not None else _figure_colname(e.expr)
                 for e in (*(node.indexParams or ()), *(node.indexIncludingParams or ()))
                 if isinstance(e, ast.IndexElem)]
        assert node.relation is not None
        concurrent.idxname = derived_name(str(node.relation.relname), *parts, "idx")
    statement = _render(concurrent)
    index = str(concurrent.idxname)
    if_not_exists = bool(node.if_not_exists)
    args = CreateIndexArgs(statement=statement, index=index, unique=bool(node.unique),
                           if_not_exists=if_not_exists)

    async def run(ctx: RunContext) -> ChangeOutcome | None:
        from pgonline.catalog import indexes as index_catalog
        from pgonline.catalog import tables
        from pgonline.catalog.partitions import partition_tree

        async with connection(ctx.dsn) as conn:
            oid, schema, rel = await tables.resolve_table(conn, QualifiedName.parse(table))
            target = QualifiedName(schema, rel).quoted()
            tree = None
            if await index_catalog.is_partitioned(conn, oid):
                # No CONCURRENTLY on a partitioned table: built piece by piece.
                tree = await partition_tree(conn, oid)
                refuse_foreign_partitions(target, tree)
            ident = render(sql.Identifier(schema, index))
            existing = await index_catalog.existing_relation(conn, schema, index, oid)
            refuse_build_in_progress(existing, ident)
            failed_build = existing is not None and existing.on_table and not existing.valid \
                and existing.kind == ("i" if tree is None else "I")
            if existing is not None and not failed_build:
                if if_not_exists:
                    ctx.out(f"relation {ident} already exists: skipped (IF NOT EXISTS)")
                    return None
                raise CatalogError(f"relation {ident} already exists",
                                   hint="name the index differently in the migration")

            async def make_plan() -> Plan:
                if tree is None:
                    return plan_create_index(CreateIndexFacts(table=target, schema=schema), args)
                return plan_create_index(CreateIndexFacts(
                    table=target, schema=schema, name=rel, partitions=tree,
                    statements=_partition_statements(concurrent, tree, index)), args)

            return await plan_and_run(ctx, conn, kind_of(plan_create_index), target,
                                      {"statement": args.statement}, make_plan)

    return Rewrite(kind_of(plan_create_index), statement, run)


def _partition_statements(concurrent: ast.IndexStmt, tree: PartitionTree,
                          index: str) -> tuple[str, ...]:
    """The migration's CREATE INDEX for the root (ON ONLY) and each partition, in tree order.

    The same definition, deparsed once per table: ``ON ONLY`` (catalog only)
    for the root and each partitioned partition, ``CONCURRENTLY`` on each
    leaf, under the piece's derived name.  IF NOT EXISTS was decided for the
    whole index before planning; each step's ``done_if`` covers re-runs.
    """
    def one(schema: str | None, relname: str | None, name: str, leaf: bool) -> str:
        stmt = copy.deepcopy(concurrent)
        assert stmt.relation is not None
        relation = copy.deepcopy(stmt.relation)
        if relname is not None:
            relation.schemaname, relation.relname = schema, relname
        relation.inh = leaf
        stmt.relation = relation
        stmt.idxname, stmt.concurrent, stmt.if_not_exists = name, leaf, False
        return _render(stmt)

    return (one(None, None, index, False), *(
        one(p.schema, p.name, piece_name(index, p), p.is_leaf) for p in tree.partitions))


# -- DROP INDEX [IF EXISTS] name -> online drop-index --------------------------------------


@recogniser(plan_drop_index)
def _drop_index(node: ast.Node) -> Rewrite | None:
    # CASCADE (dependent constraints go too) and lists of indexes have no
    # concurrent form: they run as written.
    if (not isinstance(node, ast.DropStmt) or node.removeType is not enums.ObjectType.OBJECT_INDEX
            or node.concurrent or node.behavior is enums.DropBehavior.DROP_CASCADE
            or len(node.objects or ()) != 1):
        return None
    key = _drop_key((node.objects or ())[0])
    if key is None:
        return None
    schema, relname = key
    index = render(sql.Identifier(*(p for p in key if p is not None)))

    def change() -> Change[DropIndexArgs]:
        name = QualifiedName(None if schema is None else identifier(schema), identifier(relname))
        return Change(name, DropIndexArgs(index=name.quoted()))

    async def skip(ctx: RunContext) -> bool:
        if node.missing_ok and await _relation_missing(ctx.dsn, index):
            ctx.out(f"index {index} does not exist: skipped (IF EXISTS)")
            return True
        return False

    return _rewrite(plan_drop_index, [".".join(_d(p) for p in key if p)], change, skip=skip)


async def _relation_missing(dsn: str, name: str) -> bool:
    async with connection(dsn) as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NULL", [name])
        row = await cur.fetchone()
        return bool(row and row[0])


# -- ALTER TABLE t <one sub-command> -> set-not-null / add-check / add-foreign-key / add-unique -


def _lone_command(node: ast.Node, subtype: enums.AlterTableType) -> ast.AlterTableCmd | None:
    """The only sub-command of ``ALTER TABLE t`` (whole inheritance tree), if of ``subtype``.

    Several sub-commands run as written: PostgreSQL applies them under one
    lock in one statement, and splitting them into separate jobs would change
    what a failure leaves behind (and the order some of them depend on).
    """
    if (not isinstance(node, ast.AlterTableStmt) or node.objtype is not enums.ObjectType.OBJECT_TABLE
            or node.relation is None or not node.relation.inh or len(node.cmds or ()) != 1):
        return None
    cmd = (node.cmds or ())[0]
    if not isinstance(cmd, ast.AlterTableCmd) or cmd.subtype is not subtype:
        return None
    return cmd


def _constraint(node: ast.Node, *kinds: enums.ConstrType) -> ast.Constraint | None:
    cmd = _lone_command(node, enums.AlterTableType.AT_AddConstraint)
    if cmd is None or not isinstance(cmd.def_, ast.Constraint) or cmd.def_.contype not in kinds:
        return None
    con = cmd.def_
    if con.deferrable or con.initdeferred:
        return None  # the commands build immediate constraints only
    return con


def _table_missing(node: ast.AlterTableStmt, table: str) -> Guard | None:
    """``ALTER TABLE IF EXISTS``: a missing table is skipped, like PostgreSQL does."""
    if not node.missing_ok:
        return None

    async def missing(ctx: RunContext) -> bool:
        if await _relation_missing(ctx.dsn, table):
            ctx.out(f"table {table} does not exist: skipped (IF EXISTS)")
            return True
        return False

    return missing


def _either(first: Guard | None, second: Guard) -> Guard:
    if first is None:
        return second

    async def either(ctx: RunContext) -> bool:
        return await first(ctx) or await second(ctx)

    return either


def _names(nodes: Sequence[ast.Node] | None) -> tuple[str, ...]:
    return tuple(str(n.sval) for n in nodes or () if isinstance(n, ast.String))


@recogniser(plan_set_not_null)
def _set_not_null(node: ast.Node) -> Rewrite | None:
    cmd = _lone_command(node, enums.AlterTableType.AT_SetNotNull)
    if cmd is None or not cmd.name:
        return None
    assert isinstance(node, ast.AlterTableStmt) and node.relation is not None
    relation, column = node.relation, str(cmd.name)

    def change() -> Change[SetNotNullArgs]:
        return Change(_relation(relation), SetNotNullArgs(column=identifier(column)))

    return _rewrite(plan_set_not_null, [_shown(relation), _d(column)], change,
                    skip=_table_missing(node, _table_name(relation)))


@recogniser(plan_add_check)
def _add_check(node: ast.Node) -> Rewrite | None:
    con = _constraint(node, enums.ConstrType.CONSTR_CHECK)
    # NOT VALID is already cheap; NO INHERIT / NOT ENFORCED have no command
    # flag; an unnamed CHECK gets a name from its columns that the command
    # cannot reproduce: all run as written.
    if (con is None or not con.conname or con.raw_expr is None or con.skip_validation
            or not con.initially_valid or con.is_no_inherit or not _enforced(con)):
        return None
    assert isinstance(node, ast.AlterTableStmt) and node.relation is not None
    relation, name, expression = node.relation, str(con.conname), con.raw_expr

    def change() -> Change[AddCheckArgs]:
        return Change(_relation(relation), AddCheckArgs(
            name=identifier(name),
            expression=expressions.expression_of(expression, "CHECK expression")))

    return _rewrite(plan_add_check, [_shown(relation), _d(name), repr(_render(expression))],
                    change, skip=_table_missing(node, _table_name(relation)))


def _enforced(con: ast.Constraint) -> bool:
    # ``is_enforced`` exists from PostgreSQL 18's grammar on; older pglast lacks it.
    return bool(getattr(con, "is_enforced", True))


_ON_DELETE = {"a": None, "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}


@recogniser(plan_add_foreign_key)
def _add_foreign_key(node: ast.Node) -> Rewrite | None:
    con = _constraint(node, enums.ConstrType.CONSTR_FOREIGN)
    # The command spells MATCH SIMPLE, ON UPDATE NO ACTION and the ON DELETE
    # actions without a column list; anything else runs as written.
    if (con is None or con.skip_validation or not con.initially_valid or not _enforced(con)
            or con.pktable is None or not con.fk_attrs
            or (con.fk_matchtype or "s") not in ("s", "\0")
            or (con.fk_upd_action or "a") not in ("a", "\0")
            or (con.fk_del_action or "a") not in (*_ON_DELETE, "\0")
            or con.fk_del_set_cols or getattr(con, "fk_with_period", False)
            or getattr(con, "pk_with_period", False)):
        return None
    assert isinstance(node, ast.AlterTableStmt) and node.relation is not None
    relation, pktable = node.relation, con.pktable
    cols = _names(con.fk_attrs)
    ref_cols = _names(con.pk_attrs)
    on_delete = _ON_DELETE.get(con.fk_del_action or "a")

    def change() -> Change[AddForeignKeyArgs]:
        return fk_change(_relation(relation), tuple(map(identifier, cols)), _relation(pktable),
                         tuple(map(identifier, ref_cols)),
                         name=None if not con.conname else identifier(str(con.conname)),
                         on_delete=on_delete)

    shown_ref = _shown(con.pktable) + (f"({', '.join(map(_d, ref_cols))})" if ref_cols else "")
    bits = [_shown(node.relation), *map(_d, cols), f"--references '{shown_ref}'"]
    bits += [f"--name {_d(str(con.conname))}"] if con.conname else []
    bits += [f"--on-delete {on_delete!r}"] if on_delete else []
    return _rewrite(plan_add_foreign_key, bits, change,
                    skip=_table_missing(node, _table_name(relation)))


@recogniser(plan_add_unique)
def _add_unique(node: ast.Node) -> Rewrite | None:
    con = _constraint(node, enums.ConstrType.CONSTR_UNIQUE, enums.ConstrType.CONSTR_PRIMARY)
    # USING INDEX (already built: catalog-only), INCLUDE, WITH (...), a
    # tablespace, NULLS NOT DISTINCT and WITHOUT OVERLAPS have no command flag.
    if (con is None or not con.keys or con.indexname or con.including or con.options
            or con.indexspace or con.nulls_not_distinct or getattr(con, "without_overlaps", False)):
        return None
    assert isinstance(node, ast.AlterTableStmt) and node.relation is not None
    relation = node.relation
    cols = _names(con.keys)
    primary = con.contype is enums.ConstrType.CONSTR_PRIMARY

    def change() -> Change[AddUniqueArgs]:
        return key_change(_relation(relation), tuple(map(identifier, cols)),
                          None if not con.conname else identifier(str(con.conname)),
                          pk_name if primary else default_unique_name)

    bits = [_shown(relation), *map(_d, cols)]
    bits += [f"--name {_d(str(con.conname))}"] if con.conname else []
    return _rewrite(plan_add_primary_key if primary else plan_add_unique, bits, change,
                    skip=_table_missing(node, _table_name(relation)))
