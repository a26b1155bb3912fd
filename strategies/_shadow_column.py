"""The shadow-column machinery shared by change-type and rename-column (pure).

Both changes follow one expand → backfill → contract shape:

expand
    add a nullable shadow column without a default (catalog only), then a
    BEFORE INSERT OR UPDATE trigger that keeps it in step with the original
    column for every write the application makes from now on;
backfill
    batched keyset UPDATEs fill the shadow column for existing rows; then
    NOT NULL is proven with ``CHECK (...) NOT VALID`` + ``VALIDATE`` (which
    scans under SHARE UPDATE EXCLUSIVE, not blocking traffic), and every index
    on the original column is rebuilt on the shadow column ``CONCURRENTLY``;
contract
    one short ACCESS EXCLUSIVE transaction cuts over (drop the trigger, move
    constraints, default, NOT NULL and sequence ownership, swap names), then
    the original column is dropped (catalog only).

Nothing here performs I/O: the facts come from :mod:`pgonline.catalog.columns`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pglast import ast, parse_sql
from pglast.stream import RawStream
from pgonline.strategies._ddl import (
    PAGE_WALK_NOTE,
    index_exists_query,
    no_nulls_step,
    not_null_check_name,
    not_null_check_steps,
    vacuum_step,
    walk_key,
)
from psycopg import sql

from pgonline.catalog.column_details import ColumnDetails, ColumnIndex, Dependent
from pgonline.catalog.facts import TableFacts
from pgonline.engine.plan import BackfillSpec, LockLevel, Phase, Step
from pgonline.errors import CatalogError, UsageError
from pgonline.sql.names import helper_column_name, helper_index_name, helper_name
from pgonline.sql.render import render

# Dependents the shadow-column path moves itself; anything else is refused.
MOVABLE = frozenset({"index", "primary key", "unique constraint", "owned sequence"})
DOLLAR_TAG = "$pgonline$"


def shadow_name(table: TableFacts, column: str, role: str) -> str:
    """``<column>_pgonline_<role>_<hash>``: unique per (table, column), ≤ 63 bytes.

    Computed once, at planning: the journal stores the rendered plan, so a
    resumed job keeps the names it started with.
    """
    return helper_column_name(role, table.schema, table.name, column)


def sync_trigger_name(prefix: str, table: TableFacts, column: str) -> str:
    """The sync trigger's (and its function's) name, unique per (schema, table, column).

    ``prefix`` starts with ``zz_`` so the trigger fires after the application's
    own BEFORE triggers (PostgreSQL fires them in name order).
    """
    return helper_name(prefix, table.schema, table.name, column)


def twin_index_name(ix: ColumnIndex, shadow: str) -> str:
    """The name of ``ix``'s twin on ``shadow``, built before the cut-over renames it back."""
    return helper_index_name("new", ix.schema, ix.name, shadow)


def refuse_unmovable(table: TableFacts, col: ColumnDetails, verb: str, *,
                     references_hint: str | None = None, references_move: bool = False,
                     own_keys_moved: int = 0) -> None:
    """CatalogError for anything on the column this strategy cannot carry across safely.

    ``references_move``: the plan converts every column referencing this one
    too (change-type --with-references), so foreign keys onto it are carried.
    ``own_keys_moved``: this column is such a referencing column, and that
    many of its own foreign keys are dropped and re-created by the plan.
    """
    name = render(sql.Identifier(col.name))
    where = f"{name} of {table.display}"
    if col.relkind == "p":
        refuse_partitioned(table, col, verb, name)
    if col.generated:
        raise CatalogError(f"cannot {verb} {where}: it is a generated column")
    if col.identity or (col.sequence is not None and col.sequence.identity):
        raise CatalogError(
            f"cannot {verb} {where}: it is an identity column, whose sequence cannot be "
            "handed to another column without a gap in id generation",
            hint="convert it to a sequence default first (ALTER TABLE ... ALTER COLUMN ... "
            "DROP IDENTITY after creating and attaching an equivalent sequence), then retry",
        )
    refs = [d for d in col.dependents if d.kind == "referencing foreign key"]
    if refs and not references_move:
        listed = ([k.label for k in col.referenced_by] if col.referenced_by
                  else [d.label.removeprefix("referencing ") for d in refs])
        raise CatalogError(
            f"cannot {verb} {where}: it is referenced by {len(listed)} foreign "
            f"key{'s' if len(listed) != 1 else ''}: " + "; ".join(listed),
            hint=references_hint or "moving foreign keys is out of scope: drop them, run this "
            "change, then re-add them with NOT VALID + VALIDATE CONSTRAINT (online, no long lock)",
        )
    own_keys = [d for d in col.dependents if d.kind == "foreign key"]
    if len(own_keys) > own_keys_moved:
        raise CatalogError(
            f"cannot {verb} {where}: its own foreign key would not follow the new column: "
            + _listing(own_keys[own_keys_moved:] if own_keys_moved else own_keys),
            hint="drop it first and recreate it on the column afterwards (NOT VALID + VALIDATE)",
        )
    others = [d for d in col.dependents
              if d.kind not in MOVABLE and d.kind not in ("referencing foreign key", "foreign key")]
    if others:
        raise CatalogError(
            f"cannot {verb} {where}: these objects depend on it and would not follow the "
            f"new column: {_listing(others)}",
            hint="drop them first and recreate them on the column afterwards",
        )
    for ix in col.indexes:
        if not ix.valid:
            raise CatalogError(
                f"cannot {verb} {where}: index {ix.name} on it is INVALID "
                "(left over from a failed CREATE INDEX CONCURRENTLY?)",
                hint=f"drop it first: DROP INDEX CONCURRENTLY {_qname(ix.schema, ix.name)}",
            )
        if ix.constraint_type == "x":
            raise CatalogError(f"cannot {verb} {where}: exclusion constraint "
                               f"{ix.constraint} uses it")
        if ix.deferrable:
            raise CatalogError(f"cannot {verb} {where}: constraint {ix.constraint} is "
                               "DEFERRABLE, which ADD CONSTRAINT ... USING INDEX cannot recreate")


def refuse_partitioned(table: TableFacts, col: ColumnDetails, verb: str, name: str) -> None:
    """Why the shadow-column path cannot (or does not yet) run on partitioned ``table``.

    The reasons, in order: a partition key column cannot be dropped or
    retyped at all (PostgreSQL refuses); a primary key or unique constraint
    on the column would have to be moved with ``ADD CONSTRAINT ... USING
    INDEX``, which PostgreSQL does not support on partitioned tables; the
    twin indexes on the shadow column need ``CREATE INDEX CONCURRENTLY``,
    which does not run on a partitioned table; and the cut-over (rename and
    drop) takes ACCESS EXCLUSIVE on the parent and every partition in one
    transaction, a path pgonline does not run yet.
    """
    renaming = verb == "rename"
    if renaming:
        hint = ("a plain ALTER TABLE ... RENAME COLUMN on the parent is a catalog update (brief "
                "ACCESS EXCLUSIVE on the parent and its partitions), but code using the old "
                "name breaks at that moment; deploy code that reads both names first")
    else:
        hint = ("every partition must have the parent's column types, so the type changes on "
                "the whole tree at once: ALTER TABLE ... ALTER COLUMN ... TYPE in a maintenance "
                "window (it rewrites every partition under ACCESS EXCLUSIVE unless the change "
                "is binary-coercible, such as varchar(n) to text), or build a new partitioned "
                "table and move the rows")
    where = f"{name} of partitioned table {table.display}"
    if col.in_partition_key:
        raise CatalogError(
            f"cannot {verb} {where}: it is in the partition key of {table.display} (or of a "
            "sub-partitioned partition); PostgreSQL cannot drop"
            + ("" if renaming else " or retype")
            + " a partition key column, so no shadow column can replace it",
            hint="a partition key is fixed for the life of the table: build a new partitioned "
            "table and move the rows" if not renaming else hint)
    keys = [ix for ix in col.indexes if ix.constraint_type in ("p", "u")]
    if keys:
        raise CatalogError(
            f"cannot {verb} {where}: the cut-over moves "
            f"constraint {keys[0].constraint} to the new column with ADD CONSTRAINT ... USING "
            "INDEX, which PostgreSQL does not support on partitioned tables", hint=hint)
    if col.indexes:
        names = ", ".join(ix.name for ix in col.indexes)
        raise CatalogError(
            f"cannot {verb} {where}: its indexes ({names}) "
            "must be rebuilt on the new column, and CREATE INDEX CONCURRENTLY does not run on "
            "a partitioned table (pgonline builds partitioned indexes per partition only in "
            "add-index and add-unique so far)", hint=hint)
    raise CatalogError(
        f"cannot {verb} {where}: pgonline does not run the "
        "shadow-column change on partitioned tables yet (its cut-over renames and drops the "
        "column under ACCESS EXCLUSIVE on the parent and every partition in one transaction, "
        "a path it does not test)", hint=hint)


def _listing(deps: Sequence[Dependent]) -> str:
    return "; ".join(d.label for d in deps)


def _qname(schema: str, name: str) -> str:
    return render(sql.Identifier(schema, name))


def _rename_columns(node: object, old: str, new: str) -> None:
    """Point every reference to column ``old`` in an index statement at ``new``."""
    if isinstance(node, ast.IndexElem) and node.name == old:
        node.name = new
    if isinstance(node, ast.ColumnRef) and node.fields:
        last = node.fields[-1]
        if isinstance(last, ast.String) and last.sval == old:
            node.fields = (*node.fields[:-1], ast.String(sval=new))
    if isinstance(node, ast.Node):
        for attr in node:
            _rename_columns(getattr(node, attr), old, new)
    elif isinstance(node, tuple | list):
        for item in node:
            _rename_columns(item, old, new)


def shadow_index_sql(ix: ColumnIndex, column: str, shadow: str, new_name: str) -> str:
    """The index's own definition, on the shadow column, built CONCURRENTLY under a new name.

    The definition comes from ``pg_get_indexdef`` and is rewritten on the
    parse tree (pglast), not by text substitution, so operator classes,
    collations, INCLUDE lists, expressions and predicates all carry over.
    """
    stmt = parse_sql(ix.definition)[0].stmt
    assert isinstance(stmt, ast.IndexStmt)
    _rename_columns(stmt, column, shadow)
    stmt.idxname = new_name
    stmt.concurrent = True
    rendered: str = RawStream()(stmt)
    return rendered


@dataclass(frozen=True)
class ShadowPlan:
    """What differs between change-type and rename-column; the rest is shared."""

    table: TableFacts
    col: ColumnDetails
    shadow: str  # the shadow column's name
    shadow_type_sql: str  # its type (with COLLATE when needed)
    final_name: str  # the column's name after the cut-over
    parked_name: str | None  # change-type: the original column's name until it is dropped
    function_body: str  # plpgsql body of the sync trigger function
    trigger_prefix: str
    backfill_set: str
    backfill_where: str
    # Why rollback refuses after the cut-over: the old column no longer
    # receives writes, so swapping back would silently lose them.
    restore_hint: str
    # The server's major version: from 14 on, a table without a key is
    # backfilled by ranges of pages (the fill is idempotent: `shadow IS NULL`).
    server_major: int = 0
    # When the shadow column is a function of the original column alone, the
    # UPDATE trigger fires only WHEN this holds (the original column changed):
    # the backfill's own UPDATEs, which change only the shadow column, then
    # skip the trigger function (a PL/pgSQL call per row).
    update_when: str | None = None


@dataclass(frozen=True)
class ShadowParts:
    """One column's shadow-column steps, for a plan to compose (one column, or a
    key and every column referencing it)."""

    expand: list[Step]
    backfill: list[Step]
    # The cut-over's statements after its LOCK TABLE (which the plan writes,
    # once for every table it swaps).
    swap: list[sql.Composable]
    drop_old: Step
    notes: list[str]


def build_steps(p: ShadowPlan) -> tuple[list[Step], list[str]]:
    """Expand, backfill and contract steps (and plan notes) for a shadow-column change."""
    parts = shadow_parts(p)
    # The strongest lock first: taking SHARE ROW EXCLUSIVE (DROP TRIGGER)
    # and upgrading later could deadlock with an application transaction
    # that read the table and then writes it.
    lock = sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(p.table.ident)
    cutover = cutover_step([lock, *parts.swap], irreversible=p.restore_hint)
    return [*parts.expand, *parts.backfill, cutover, parts.drop_old], parts.notes


def shadow_parts(p: ShadowPlan) -> ShadowParts:
    """The steps of one column's change and its part of the cut-over."""
    t, col = p.table, p.col
    key = walk_key(t, major=p.server_major)
    if DOLLAR_TAG in p.function_body:
        raise UsageError(f"expressions must not contain {DOLLAR_TAG}")
    table = t.ident
    shadow = sql.Identifier(p.shadow)
    trigger_name = sync_trigger_name(p.trigger_prefix, t, col.name)
    function = sql.Identifier(t.schema, trigger_name)
    triggers = _sync_triggers(p, trigger_name)
    drop_trigger = sql.SQL(";\n").join(
        [sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trg), table)
         for trg, _, _ in triggers]
        + [sql.SQL("DROP FUNCTION IF EXISTS {}()").format(function)])
    expand = [
        Step(
            id="add-shadow-column", phase=Phase.EXPAND, lock=LockLevel.ACCESS_EXCLUSIVE,
            description=f"add the shadow column {p.shadow} {p.shadow_type_sql} (no default)",
            sql=render(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                table, shadow, sql.SQL(p.shadow_type_sql))),
            undo_sql=render(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(table, shadow)),
            why_safe="a nullable column without a default is a catalog-only change: "
            "no rewrite, no scan; the lock is held for milliseconds",
        ),
        Step(
            id="install-sync-trigger", phase=Phase.EXPAND, lock=LockLevel.SHARE_ROW_EXCLUSIVE,
            description="install the trigger keeping the shadow column in step with live writes",
            sql=render(sql.SQL(";\n").join([
                sql.SQL(
                    "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql\n"
                    "SET search_path FROM CURRENT AS {tag}\n{body}\n{tag}"
                ).format(fn=function, tag=sql.SQL(DOLLAR_TAG), body=sql.SQL(p.function_body)),
                *(sql.SQL("DROP TRIGGER IF EXISTS {} ON {}").format(sql.Identifier(trg), table)
                  for trg, _, _ in triggers),
                *(sql.SQL("CREATE TRIGGER {trg} {events} ON {table}\n"
                          "FOR EACH ROW{cond} EXECUTE FUNCTION {fn}()").format(
                      trg=sql.Identifier(trg), events=sql.SQL(events), table=table, fn=function,
                      cond=sql.SQL("") if when is None
                      else sql.SQL(" WHEN ({})").format(sql.SQL(when)))
                  for trg, events, when in triggers),
            ])),
            undo_sql=render(drop_trigger),
            why_safe="CREATE TRIGGER is a catalog change under SHARE ROW EXCLUSIVE (reads go on, "
            "writes wait only for the lock under lock_timeout); the trigger's name sorts last "
            "so it sees the final row after the application's own BEFORE triggers",
        ),
    ]
    backfill = [
        Step(
            id="backfill", phase=Phase.BACKFILL, lock=LockLevel.ROW_EXCLUSIVE,
            description="fill the shadow column of existing rows in short keyset batches",
            backfill=BackfillSpec(schema=t.schema, table=t.name, key_columns=key,
                                  set_sql=p.backfill_set, where_sql=p.backfill_where),
            why_safe="each batch is its own short transaction; rows the application writes "
            "meanwhile were already synced by the trigger and are skipped",
        ),
        vacuum_step(t),
    ]
    check = sql.Identifier(not_null_check_name(t, p.shadow))
    if col.column.not_null:
        # The shadow column gets its values from the conversion (change-type
        # --using) or the copy: if any came out NULL, a NOT VALID check would
        # start rejecting the application's writes at once.  Count first; with
        # NULLs the job stops here, with nothing constrained.
        backfill.append(replace(no_nulls_step(t, p.shadow), id="check-shadow-nulls",
                                phase=Phase.BACKFILL))
        backfill += not_null_check_steps(t, p.shadow, phase=Phase.BACKFILL,
                                         ids=("add-not-null-check", "validate-not-null-check"))
    moves: list[tuple[ColumnIndex, str]] = []
    for i, ix in enumerate(col.indexes, 1):
        new_name = twin_index_name(ix, p.shadow)
        moves.append((ix, new_name))
        drop_new = render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
            sql.Identifier(ix.schema, new_name)))
        backfill.append(Step(
            id=f"build-index-{i}", phase=Phase.BACKFILL, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
            transactional=False,
            description=f"build {ix.name}'s twin on the shadow column concurrently",
            sql=shadow_index_sql(ix, col.name, p.shadow, new_name),
            done_if=index_exists_query(t.display, ix.schema, new_name, valid=True),
            cleanup_if=index_exists_query(t.display, ix.schema, new_name, valid=False),
            cleanup_sql=drop_new, undo_sql=drop_new,
            why_safe="CREATE INDEX CONCURRENTLY does not block reads or writes; an INVALID index "
            "left by an interrupted attempt is dropped before the retry",
        ))
    parked = sql.Identifier(p.parked_name or col.name)
    drop_old = Step(
        id="drop-old-column", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
        description=f"drop the original column {p.parked_name or col.name}",
        sql=render(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS {}").format(table, parked)),
        irreversible=p.restore_hint,
        why_safe="DROP COLUMN only marks the column dropped in the catalog (no rewrite); "
        "nothing reads or writes it any more",
    )
    names = " and ".join(name for name, _, _ in triggers)
    notes = [f"sync trigger{'s' if len(triggers) > 1 else ''} {names} "
             f"keep{'' if len(triggers) > 1 else 's'} {p.shadow} in step with live writes"
             + (f" (on UPDATE only when {render(sql.Identifier(col.name))} changes)"
                if len(triggers) > 1 else ""),
             "applications using server-side prepared statements that return this column "
             "re-prepare after the cut-over (PostgreSQL reports 'cached plan must not change "
             "result type' to statements prepared before it)"]
    if not key:
        notes.append(PAGE_WALK_NOTE)
    if col.sequence is not None:
        notes.append(f"sequence {_qname(col.sequence.schema, col.sequence.name)} moves to the "
                     f"new column at the cut-over (OWNED BY), so ids keep coming")
    return ShadowParts(expand=expand, backfill=backfill,
                       swap=_swap(p, moves, check,
                                  [sql.Identifier(trg) for trg, _, _ in triggers], function),
                       drop_old=drop_old, notes=notes)


def _sync_triggers(p: ShadowPlan, name: str) -> list[tuple[str, str, str | None]]:
    """The sync trigger(s) on the table: name, the events it fires on, its WHEN condition.

    One trigger for INSERT and UPDATE; or, with ``update_when``, one for
    INSERT and a second for UPDATE with that WHEN condition.  A WHEN
    condition cannot refer to OLD in a trigger that also fires on INSERT.
    """
    if p.update_when is None:
        return [(name, "BEFORE INSERT OR UPDATE", None)]
    update = sync_trigger_name(p.trigger_prefix + "_update", p.table, p.col.name)
    return [(name, "BEFORE INSERT", None), (update, "BEFORE UPDATE", p.update_when)]


def _swap(p: ShadowPlan, moves: list[tuple[ColumnIndex, str]], check: sql.Identifier,
          triggers: list[sql.Identifier], function: sql.Identifier) -> list[sql.Composable]:
    t, col = p.table, p.col
    table = t.ident
    old = sql.Identifier(col.name)
    shadow = sql.Identifier(p.shadow)
    final = sql.Identifier(p.final_name)
    parked = sql.Identifier(p.parked_name) if p.parked_name else old
    stmts: list[sql.Composable] = [
        # Reads and writes wait from the cut-over's LOCK TABLE to COMMIT, so
        # dropping the trigger first cannot let a write slip past unsynced.
        *(sql.SQL("DROP TRIGGER {} ON {}").format(trigger, table) for trigger in triggers),
        sql.SQL("DROP FUNCTION {}()").format(function),
    ]
    for ix, _ in moves:
        if ix.constraint is not None:
            stmts.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                table, sql.Identifier(ix.constraint)))
        else:
            stmts.append(sql.SQL("DROP INDEX {}").format(sql.Identifier(ix.schema, ix.name)))
    if p.parked_name:
        stmts.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(table, old, parked))
    if p.shadow != p.final_name:
        stmts.append(sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(table, shadow, final))
    # The original column must accept the rows the application now inserts
    # without it until it is dropped: no NOT NULL, no default (which could
    # also still use the sequence).
    old_alters: list[sql.Composable] = []
    if col.column.default is not None:
        old_alters.append(sql.SQL("ALTER COLUMN {} DROP DEFAULT").format(parked))
    if col.column.not_null:
        old_alters.append(sql.SQL("ALTER COLUMN {} DROP NOT NULL").format(parked))
    new_alters: list[sql.Composable] = []
    if col.column.default is not None:
        new_alters.append(sql.SQL("ALTER COLUMN {} SET DEFAULT ({})").format(
            final, sql.SQL(col.column.default)))
    if col.column.not_null:
        # Proven by the validated CHECK: no scan under the lock (PostgreSQL >= 12).
        new_alters.append(sql.SQL("ALTER COLUMN {} SET NOT NULL").format(final))
    alters = old_alters + new_alters
    if alters:
        stmts.append(sql.SQL("ALTER TABLE {} {}").format(table, sql.SQL(", ").join(alters)))
    if col.column.not_null:
        stmts.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(table, check))
    for ix, new_name in moves:
        if ix.constraint is not None:
            kind = "PRIMARY KEY" if ix.constraint_type == "p" else "UNIQUE"
            stmts.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} USING INDEX {}").format(
                table, sql.Identifier(ix.constraint), sql.SQL(kind), sql.Identifier(new_name)))
        else:
            stmts.append(sql.SQL("ALTER INDEX {} RENAME TO {}").format(
                sql.Identifier(ix.schema, new_name), sql.Identifier(ix.name)))
    if col.sequence is not None:
        seq = sql.Identifier(col.sequence.schema, col.sequence.name)
        # OWNED BY first of all keeps the sequence alive when the old column
        # is dropped; AS bigint lets a serial sequence pass 2^31 - 1.
        widen = (sql.SQL(" AS bigint") if p.shadow_type_sql == "bigint"
                 and col.sequence.type in ("smallint", "integer") else sql.SQL(""))
        stmts.append(sql.SQL("ALTER SEQUENCE {}{} OWNED BY {}").format(
            seq, widen, sql.Identifier(t.schema, t.name, p.final_name)))
    return stmts


def cutover_step(stmts: Sequence[sql.Composable], *, irreversible: str,
                 description: str = "cut over in one short transaction: drop the trigger, move "
                 "constraints, default, NOT NULL and sequence to the new column",
                 tables: tuple[str, ...] = ()) -> Step:
    """The cut-over: ``stmts`` (a LOCK TABLE first) in one transaction."""
    return Step(
        id="cutover", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
        description=description,
        sql=render(sql.SQL(";\n").join(stmts)),
        irreversible=irreversible,
        why_safe="every statement is catalog-only (the indexes were built and NOT NULL proven "
        "beforehand), so ACCESS EXCLUSIVE is held for milliseconds, under lock_timeout",
        tables=tables,
    )
