"""Building blocks shared by the index and constraint strategies (pure, no I/O).

The module name starts with an underscore so strategy discovery skips it: it
registers nothing, it only renders SQL and steps that several strategies use.
"""

from __future__ import annotations

from collections.abc import Sequence

from pgonline.strategies._partitioned_constraints import leaf_validate_steps
from psycopg import sql

from pgonline.catalog.facts import ConstraintFacts, DataViolations, ExistingRelation, TableFacts
from pgonline.catalog.partitions import PartitionTree
from pgonline.catalog.suggestions import missing_column
from pgonline.engine.plan import LockLevel, Phase, Step
from pgonline.errors import CatalogError, PreflightError
from pgonline.sql.names import derived_name, helper_name
from pgonline.sql.render import render


def require_columns(table: TableFacts, columns: Sequence[str]) -> None:
    if not columns:
        raise CatalogError("give at least one column")
    if len(set(columns)) != len(columns):
        raise CatalogError(f"a column is listed twice: {', '.join(columns)}")
    for c in columns:
        if table.column(c) is None:
            raise missing_column(table, c)


def require_batch_key(table: TableFacts) -> tuple[str, ...]:
    """The key a backfill walks in keyset batches, or a CatalogError saying how to get one."""
    key = table.batch_key()
    if key is None:
        raise CatalogError(
            f"{table.display} has no primary key or NOT NULL unique index to batch over",
            hint="add a primary key first (online add-primary-key), then retry; a backfill "
            "by row position (used for the fills of add-column, set-not-null and change-type) "
            "could update a row twice, as an UPDATE may move it to a page still to be walked",
        )
    return key


# PostgreSQL >= 14 scans a ctid range directly (engine/tid_ranges.py).
TID_RANGE_SCAN_MAJOR = 14


PAGE_WALK_NOTE = ("no primary key or NOT NULL unique index: the backfill walks ranges of pages "
                  "(TID range scans) and re-walks the table if it is rewritten meanwhile "
                  "(VACUUM FULL, CLUSTER)")


def walk_key(table: TableFacts, *, major: int) -> tuple[str, ...]:
    """The key an *idempotent* fill walks: the batch key, or ``()`` for ranges of pages.

    Only for a backfill whose predicate turns false once a row is done (``col IS
    NULL`` and a value computed from the row): walking by position may meet a
    row twice, and then the predicate skips it (see engine/tid_ranges.py).
    """
    key = table.batch_key()
    if key is not None:
        return key
    if major >= TID_RANGE_SCAN_MAJOR:
        return ()
    raise CatalogError(
        f"{table.display} has no primary key or NOT NULL unique index to batch over, and "
        f"PostgreSQL {major} cannot batch by row position instead (TID range scans, which "
        f"read only the pages of a batch, exist from PostgreSQL {TID_RANGE_SCAN_MAJOR} on)",
        hint="add a primary key first (online add-primary-key), then retry",
    )


def refuse_build_in_progress(existing: ExistingRelation | None, ident: str) -> None:
    """An INVALID index of our name that another backend is building now is not a
    leftover: DROP INDEX CONCURRENTLY would wait on their build's lock, attempt after
    attempt, and its definition is theirs, so the change is refused instead."""
    if existing is not None and existing.building_pid is not None:
        raise CatalogError(
            f"index {ident} is being built right now by backend {existing.building_pid} "
            "(a concurrent build in progress, not a leftover)",
            hint="wait for that build to finish (pg_stat_progress_create_index shows it), "
            "or choose another name with --name")


def refuse_violations(found: DataViolations, what: str, hint: str) -> None:
    """Raise :class:`PreflightError` when a pre-flight query found offending rows."""
    if found.count > 0:
        raise PreflightError(f"{found.count} {what}{found.examples()}", hint=hint)


def index_exists_query(table: str, schema: str, index: str, *, valid: bool) -> str:
    """One boolean: an index ``schema.index`` on ``table`` (quoted) exists with ``indisvalid = valid``.

    The one probe of every concurrent index build (its ``done_if`` with
    ``valid``, its ``cleanup_if`` without).  Names are passed to
    ``to_regclass`` as quoted literals, so the probe is exact (no case
    folding) and returns false instead of failing when absent.
    """
    return render(sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM pg_index x"
        " WHERE x.indexrelid = to_regclass({}) AND x.indrelid = to_regclass({})"
        " AND {}x.indisvalid)"
    ).format(
        sql.Literal(render(sql.Identifier(schema, index))),
        sql.Literal(table),
        sql.SQL("" if valid else "NOT "),
    ))


def constraint_exists_query(table: TableFacts, name: str, *, validated: bool = False) -> str:
    """One boolean: constraint ``name`` exists on ``table`` (and is validated, if asked)."""
    return render(sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint"
        " WHERE conrelid = to_regclass({}) AND conname = {}{})"
    ).format(
        sql.Literal(table.display), sql.Literal(name),
        sql.SQL(" AND convalidated" if validated else ""),
    ))


def drop_index_concurrently(schema: str, index: str) -> str:
    return render(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
        sql.Identifier(schema, index)))


def build_index_step(*, step_id: str, table: TableFacts, index: str, unique: bool,
                     keys: Sequence[sql.Composable], using: str | None = None,
                     where: str | None = None, description: str) -> Step:
    """``CREATE [UNIQUE] INDEX CONCURRENTLY`` as a restartable, non-transactional step.

    * ``done_if``: a *valid* index of that name on the table exists, so a
      crash after the build but before the journal update is harmless.
    * ``cleanup_if``/``cleanup_sql``: an INVALID index of that name is what an
      interrupted or failed build leaves behind (a lock timeout while waiting
      for old transactions, a duplicate key, a killed session); it is dropped
      concurrently before each attempt, so the next attempt starts clean.
    """
    definition = index_definition(unique=unique, keys=keys, using=using, where=where)
    return concurrent_index_step(
        step_id=step_id, target=table.ident, schema=table.schema, index=index,
        statement=create_index_sql(index, table.ident, definition, concurrently=True),
        description=description)


def index_definition(*, unique: bool, keys: Sequence[sql.Composable], using: str | None,
                     where: str | None) -> tuple[bool, sql.Composable, sql.Composable]:
    """(unique, ``[USING m] (keys)``, ``[WHERE (pred)]``): what the index is, wherever it is built."""
    body = sql.SQL("{}({})").format(
        sql.SQL("") if using is None else sql.SQL("USING {} ").format(sql.Identifier(using)),
        sql.SQL(", ").join(keys))
    pred = sql.SQL("") if where is None else sql.SQL(" WHERE ({})").format(sql.SQL(where))
    return unique, body, pred


def create_index_sql(index: str, target: sql.Identifier,
                     definition: tuple[bool, sql.Composable, sql.Composable], *,
                     concurrently: bool = False, only: bool = False) -> str:
    """``CREATE [UNIQUE] INDEX [CONCURRENTLY] index ON [ONLY] target ...``."""
    unique, body, pred = definition
    return render(sql.SQL("CREATE {}INDEX {}{} ON {}{} {}{}").format(
        sql.SQL("UNIQUE " if unique else ""),
        sql.SQL("CONCURRENTLY " if concurrently else ""),
        sql.Identifier(index), sql.SQL("ONLY " if only else ""), target, body, pred))


def concurrent_index_step(*, step_id: str, target: sql.Identifier, schema: str, index: str,
                          statement: str, description: str) -> Step:
    """:func:`build_index_step` on any table (a partition too): ``statement`` is its
    ``CREATE INDEX CONCURRENTLY index ON target ...``."""
    table = render(target)
    drop = drop_index_concurrently(schema, index)
    return Step(
        id=step_id, phase=Phase.EXPAND, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        transactional=False, description=description,
        sql=statement,
        done_if=index_exists_query(table, schema, index, valid=True),
        cleanup_if=index_exists_query(table, schema, index, valid=False),
        cleanup_sql=drop,
        # DROP INDEX CONCURRENTLY cannot run in a transaction either; the
        # rollback runs a non-transactional step's undo in autocommit mode.
        undo_sql=drop,
        why_safe="CONCURRENTLY builds under SHARE UPDATE EXCLUSIVE, which does not block "
        "reads or writes; an interrupted build leaves an INVALID index that is dropped "
        "and rebuilt on the next attempt",
    )


def not_null_check_name(t: TableFacts, column: str) -> str:
    """The helper CHECK's name: unique per (schema, table, column), so it is only ever ours."""
    return helper_name("pgonline_nn", t.schema, t.name, column)


def add_not_valid_step(t: TableFacts, name: str, definition: sql.Composable, *, step_id: str,
                       phase: Phase, description: str) -> Step:
    """``ADD CONSTRAINT name <definition> NOT VALID``: instant, enforced for new writes only.

    One left by an earlier, abandoned attempt is reused (``done_if``), and
    validated by the step that follows.
    """
    table, con = t.ident, sql.Identifier(name)
    return Step(
        id=step_id, phase=phase, lock=LockLevel.ACCESS_EXCLUSIVE, description=description,
        sql=render(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {} NOT VALID")
                   .format(table, con, definition)),
        done_if=constraint_exists_query(t, name),
        undo_sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(table, con)),
        why_safe="NOT VALID skips the scan of existing rows; the lock is held for a catalog "
        "update only",
    )


def validate_step(t: TableFacts, name: str, *, why_safe: str, step_id: str = "validate",
                  description: str | None = None) -> Step:
    """``VALIDATE CONSTRAINT name`` (skipped if it is already validated)."""
    return Step(
        id=step_id, phase=Phase.CONTRACT, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        description=description or f"validate {render(sql.Identifier(name))} against existing rows",
        sql=render(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            t.ident, sql.Identifier(name))),
        done_if=constraint_exists_query(t, name, validated=True),
        why_safe=why_safe,
    )


def not_null_check_steps(t: TableFacts, column: str, *, phase: Phase,
                         ids: tuple[str, str] = ("add-check", "validate-check")) -> list[Step]:
    """``CHECK (col IS NOT NULL) NOT VALID`` then ``VALIDATE``: proof of NOT NULL without a scan
    under a blocking lock (the scan runs under SHARE UPDATE EXCLUSIVE)."""
    table, col = t.ident, sql.Identifier(column)
    name = not_null_check_name(t, column)
    return [
        add_not_valid_step(t, name, sql.SQL("CHECK ({} IS NOT NULL)").format(col), step_id=ids[0],
                           phase=phase, description="add CHECK (col IS NOT NULL) NOT VALID"),
        Step(
            id=ids[1], phase=phase, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
            description="validate the check against existing rows",
            sql=render(sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
                table, sql.Identifier(name))),
            why_safe="VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes continue",
        ),
    ]


def not_null_constraint_name(t: TableFacts, column: str) -> str:
    """PostgreSQL's own naming for a not-null constraint: ``<table>_<column>_not_null``.

    The add step treats an existing constraint of that name as its own
    leftover (``done_if``), so a different constraint that happens to carry
    the name is refused here, at planning: reusing it would validate someone
    else's constraint and leave the column nullable.  The column's own
    unvalidated not-null constraint, whatever its name, is returned instead.
    """
    # PostgreSQL >= 18 allows one not-null constraint per column: an unvalidated
    # one already there (ours, or the user's under another name) is the one to
    # validate; adding a second would fail at execution.
    own = next((c.name for c in t.constraints if _is_not_null_of(c, column)), None)
    if own is not None:
        return own
    name = derived_name(t.name, column, "not_null")
    existing = t.constraint(name)
    if existing is not None:
        raise CatalogError(
            f"constraint {render(sql.Identifier(name))} already exists on {t.display} "
            f"({existing.definition}); it is the name PostgreSQL gives the NOT NULL "
            f"constraint of {render(sql.Identifier(column))}",
            hint="rename that constraint first (ALTER TABLE ... RENAME CONSTRAINT), then retry",
        )
    return name


def _is_not_null_of(con: ConstraintFacts, column: str) -> bool:
    """``con`` is a not-null constraint on ``column`` (e.g. left by an earlier attempt)."""
    target = con.definition.removeprefix("NOT NULL ").removesuffix(" NOT VALID")
    quoted = '"' + column.replace('"', '""') + '"'
    return con.type == "n" and target in (column, quoted)


NO_NULLS_TAG = "$pgonline_nn$"


def no_nulls_step(t: TableFacts, column: str) -> Step:
    """Count the NULLs right before the NOT VALID constraint, and stop while any remain.

    Rows can turn NULL between planning and the contract phase (the
    application still writing NULLs, a backfill expression that is NULL for
    some rows, days between ``--phase backfill`` and ``--phase contract``).
    Once the NOT VALID constraint exists, every such write of the
    application fails, so it is added only when this scan (ACCESS SHARE, it
    blocks nothing) found none; otherwise the step fails with the count and
    nothing has been constrained.
    """
    table, col = t.ident, sql.Identifier(column)
    what = sql.Literal(f" rows of {t.display} have {render(col)} IS NULL; nothing is "
                       "constrained yet")
    body = sql.SQL(
        "DECLARE n bigint;\nBEGIN\n"
        "  SELECT count(*) INTO n FROM {table} WHERE {col} IS NULL;\n"
        "  IF n > 0 THEN\n"
        "    RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = n || {what};\n"
        "  END IF;\nEND"
    ).format(table=table, col=col, what=what)
    if NO_NULLS_TAG in render(body):
        raise CatalogError(f"names must not contain {NO_NULLS_TAG}")
    return Step(
        id="check-nulls", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_SHARE,
        description="count the NULLs left; stop before constraining anything if there are any",
        sql=render(sql.SQL("DO {tag}\n{body}\n{tag}").format(tag=sql.SQL(NO_NULLS_TAG),
                                                              body=body)),
        why_safe="a read-only scan under ACCESS SHARE: reads and writes continue",
    )


def validate_not_null_step(t: TableFacts, name: str, column: str, *, step_id: str,
                           description: str, why_safe: str) -> Step:
    """``VALIDATE CONSTRAINT name``; if a NULL slipped in, say what the NOT VALID one now does.

    A NULL written after :func:`no_nulls_step` makes VALIDATE fail with the
    constraint still NOT VALID, and it keeps rejecting NULL writes; the error
    says so and how to get out (fix the rows and resume, or roll back).
    """
    con = sql.Identifier(name)
    detail = sql.Literal(
        f"constraint {render(con)} stays NOT VALID and rejects writes of NULL to "
        f"{render(sql.Identifier(column))}: fill the NULL rows and resume the job, or roll "
        "the job back to drop the constraint")
    body = sql.SQL(
        "BEGIN\n  ALTER TABLE {table} VALIDATE CONSTRAINT {con};\n"
        "EXCEPTION WHEN not_null_violation OR check_violation THEN\n"
        "  RAISE EXCEPTION USING ERRCODE = SQLSTATE, MESSAGE = SQLERRM, DETAIL = {detail};\n"
        "END"
    ).format(table=t.ident, con=con, detail=detail)
    if NO_NULLS_TAG in render(body):
        raise CatalogError(f"names must not contain {NO_NULLS_TAG}")
    return Step(
        id=step_id, phase=Phase.CONTRACT, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        description=description,
        sql=render(sql.SQL("DO {tag}\n{body}\n{tag}").format(tag=sql.SQL(NO_NULLS_TAG),
                                                              body=body)),
        done_if=constraint_exists_query(t, name, validated=True),
        why_safe=why_safe,
    )


def not_null_steps(t: TableFacts, column: str, *, major: int,
                   partitions: PartitionTree | None = None) -> list[Step]:
    """Make ``column`` NOT NULL without scanning under a blocking lock (all transactional).

    First a read-only count of the NULLs (:func:`no_nulls_step`), so that no
    NOT VALID constraint is added while rows would make it fail.  PostgreSQL
    >= 18 has NOT NULL constraints that can be added NOT VALID and validated
    later: one instant ACCESS EXCLUSIVE step, then the scan under SHARE UPDATE
    EXCLUSIVE.  Older servers need a helper CHECK: CHECK NOT VALID → VALIDATE
    → SET NOT NULL (proven by the check) → drop the check, three ACCESS
    EXCLUSIVE steps instead of one.
    """
    table, col = t.ident, sql.Identifier(column)
    scan_why = "VALIDATE scans under SHARE UPDATE EXCLUSIVE: reads and writes continue"

    def per_leaf(name: str) -> list[Step]:
        # A partitioned table: each leaf validates the constraint it inherited
        # (same name) in its own step; the parent's VALIDATE then scans nothing
        # (_partitioned_constraints).
        if partitions is None:
            return []
        return leaf_validate_steps(partitions, name, why_safe=scan_why)

    if major >= 18:
        name = not_null_constraint_name(t, column)
        return [
            no_nulls_step(t, column),
            add_not_valid_step(t, name, sql.SQL("NOT NULL {}").format(col), step_id="add-not-null",
                               phase=Phase.CONTRACT,
                               description="add the NOT NULL constraint NOT VALID (PostgreSQL >= 18)"),
            *per_leaf(name),
            validate_not_null_step(
                t, name, column, step_id="validate-not-null",
                description="validate it against existing rows: the column is then NOT NULL",
                why_safe=scan_why),
        ]
    name = not_null_check_name(t, column)
    check = sql.Identifier(name)
    return [
        no_nulls_step(t, column),
        add_not_valid_step(t, name, sql.SQL("CHECK ({} IS NOT NULL)").format(col),
                           step_id="add-check", phase=Phase.CONTRACT,
                           description="add CHECK (col IS NOT NULL) NOT VALID"),
        *per_leaf(name),
        validate_not_null_step(t, name, column, step_id="validate-check",
                               description="validate the check against existing rows",
                               why_safe=scan_why),
        Step(
            id="set-not-null", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="SET NOT NULL, proven by the validated check",
            sql=render(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET NOT NULL").format(table, col)),
            undo_sql=render(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL")
                            .format(table, col)),
            why_safe="PostgreSQL >= 12 uses the validated CHECK instead of scanning the table",
        ),
        Step(
            id="drop-check", phase=Phase.CONTRACT, lock=LockLevel.ACCESS_EXCLUSIVE,
            description="drop the helper check (NOT NULL now enforces it)",
            sql=render(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}").format(table, check)),
            why_safe="dropping a constraint is a catalog-only change",
        ),
    ]


def vacuum_step(t: TableFacts, *, step_id: str = "vacuum") -> Step:
    """``VACUUM (ANALYZE)`` of the table right after its backfill.

    The backfill left a dead row version for every row it updated, which
    starts an autovacuum of the table; every later step that needs a lock
    autovacuum holds (a VALIDATE, an index build, the cut-over) would wait
    for it, for hours on a large table.  Our own VACUUM waits for that
    autovacuum in the lock queue instead (see ``Step.vacuum``), so the server
    cancels it after deadlock_timeout, unless it runs to prevent wraparound,
    which is never cancelled; once ours is done, autovacuum finds nothing to do.
    """
    return Step(
        id=step_id, phase=Phase.BACKFILL, lock=LockLevel.SHARE_UPDATE_EXCLUSIVE,
        transactional=False, vacuum=True,
        description="vacuum and analyze the table: clear the row versions the backfill left "
        "behind before any step needs a lock autovacuum would hold",
        sql=render(sql.SQL("VACUUM (ANALYZE) {}").format(t.ident)),
        why_safe="VACUUM holds SHARE UPDATE EXCLUSIVE, which blocks no read or write; it is "
        "throttled by --vacuum-cost-delay, and --no-vacuum skips it",
    )

