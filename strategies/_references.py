"""change-type --with-references: a key and every column referencing it, in one cut-over (pure).

The headline case is ``integer`` → ``bigint`` on a primary key that foreign
keys reference.  Converting the key alone is impossible (the foreign keys
depend on its index), and converting it with a plain ``ALTER TYPE`` rewrites
every table involved under ACCESS EXCLUSIVE.  Instead each column, the key
and every referencing column, gets its own shadow column, sync trigger,
backfill and index twins (:mod:`pgonline.strategies._shadow_column`), and one
short transaction swaps them all:

1. ``LOCK TABLE`` every table at once, in a fixed order, with the whole
   statement bounded by ``lock_timeout`` (``lock_timeout`` alone bounds each
   table's wait separately, and the application waits on the tables we
   already hold while we wait for the next one);
2. drop the foreign keys (they depend on the old key's index);
3. each table's swap (trigger, constraints, names, default, NOT NULL, sequence);
4. re-create each foreign key as it was (``pg_get_constraintdef``: actions,
   MATCH, DEFERRABLE), ``NOT VALID``: catalog only, and enforced for every
   write from the commit on.

Then each foreign key is validated under SHARE UPDATE EXCLUSIVE (reads and
writes go on).  Why that cannot fail: until the cut-over the original
foreign key, valid and enforced, held for the original columns, and the
shadow columns are exact copies of them (trigger plus backfill); from the
cut-over on the NOT VALID key is enforced for new writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from psycopg import sql

from pgonline.catalog.column_details import ColumnDetails, ReferencingKey
from pgonline.catalog.facts import TableFacts
from pgonline.engine.plan import Plan, Step
from pgonline.sql.render import render

from ._ddl import validate_step
from ._shadow_column import ShadowParts, ShadowPlan, cutover_step, refuse_unmovable, shadow_parts

# A custom setting (any dotted name is one) that holds the cut-over's
# statement_timeout while its LOCK TABLE runs under lock_timeout's value.
_SAVED_TIMEOUT = "pgonline.cutover_statement_timeout"


@dataclass(frozen=True)
class ReferencingColumn:
    """A column whose foreign keys reference the key being converted, with its table."""

    table: TableFacts
    column: ColumnDetails
    keys: tuple[ReferencingKey, ...]

    @property
    def display(self) -> str:
        return f"{self.table.display}.{render(sql.Identifier(self.column.name))}"


def plan_with_references(main: ShadowPlan, new_type: str, refs: Sequence[ReferencingColumn],
                         plan_args: dict[str, object],
                         shadow_of: Callable[[TableFacts, ColumnDetails], ShadowPlan]) -> Plan:
    """The key's shadow-column change plus each referencing column's, swapped together."""
    t = main.table
    hint = (f"the key and its referencing columns already have type {new_type}; to go back, "
            "change the type of each of them again")
    converted: list[tuple[ReferencingColumn, ShadowParts]] = []
    unchanged: list[str] = []
    for r in refs:
        refuse_unmovable(r.table, r.column, "change the type of", own_keys_moved=len(r.keys))
        if r.column.column.type == new_type:
            unchanged.append(r.display)  # already of the new type: only its keys move
            continue
        converted.append((r, shadow_parts(replace(shadow_of(r.table, r.column),
                                                  restore_hint=hint))))
    key = shadow_parts(replace(main, restore_hint=hint))
    prefixed = [(r, _prefixed(parts, f"ref{i}-", r)) for i, (r, parts) in
                enumerate(converted, 1)]

    tables = list(dict.fromkeys([t.display, *(r.table.display for r in refs)]))
    idents = {t.display: t.ident, **{r.table.display: r.table.ident for r in refs}}
    stmts: list[sql.Composable] = _bounded_lock([idents[name] for name in tables])
    keys = [(r, k) for r in refs for k in r.keys]
    for r, k in keys:
        stmts.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            r.table.ident, sql.Identifier(k.constraint)))
    stmts += key.swap
    for _, parts in prefixed:
        stmts += parts.swap
    validations: list[Step] = []
    for i, (r, k) in enumerate(keys, 1):
        # The catalog's own definition, with the referenced table qualified
        # (read under an empty search_path); the column names are the
        # original ones again after the swap.
        again = sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            r.table.ident, sql.Identifier(k.constraint), sql.SQL(k.definition))
        if k.validated:
            stmts.append(again + sql.SQL(" NOT VALID"))
            validations.append(replace(validate_step(
                r.table, k.constraint, step_id=f"validate-fk-{i}",
                description=f"validate foreign key {render(sql.Identifier(k.constraint))} "
                f"of {r.table.display} against existing rows",
                why_safe="VALIDATE scans the referencing table under SHARE UPDATE EXCLUSIVE "
                "(ROW SHARE on the referenced one): reads and writes continue; it cannot fail, "
                "the values are copies of columns the original key held valid"),
                tables=(r.table.display,)))
        else:
            stmts.append(again)  # it was NOT VALID: it stays so, as the user left it
    cutover = cutover_step(
        stmts, irreversible=hint, tables=tuple(tables),
        description="cut over every table in one short transaction: drop the foreign keys, "
        "swap each column (trigger, constraints, default, NOT NULL, sequence), re-create the "
        "foreign keys NOT VALID")
    steps = [*key.expand, *(s for _, p in prefixed for s in p.expand),
             *key.backfill, *(s for _, p in prefixed for s in p.backfill),
             cutover, *validations,
             key.drop_old, *(p.drop_old for _, p in prefixed)]
    notes = [f"expand/contract: {main.col.column.type} -> {new_type} on {t.display} and "
             f"{len(refs)} referencing column{'s' if len(refs) != 1 else ''}: "
             + ", ".join(r.display for r in refs),
             *key.notes, *(n for _, p in prefixed for n in p.notes[:1])]
    if unchanged:
        notes.append(f"already {new_type}, only their foreign keys move: " + ", ".join(unchanged))
    return Plan("change-type", t.display, plan_args, tuple(steps), notes=tuple(notes))


def _prefixed(parts: ShadowParts, prefix: str, r: ReferencingColumn) -> ShadowParts:
    """A referencing column's steps: ids prefixed, its table named, locked and waited for."""

    def own(step: Step) -> Step:
        return replace(step, id=prefix + step.id, description=f"{r.display}: {step.description}",
                       tables=(r.table.display,))

    return ShadowParts(expand=[own(s) for s in parts.expand],
                       backfill=[own(s) for s in parts.backfill],
                       swap=parts.swap, drop_old=own(parts.drop_old), notes=parts.notes)


def _bounded_lock(tables: list[sql.Composable]) -> list[sql.Composable]:
    """``LOCK TABLE`` of every table in one statement, waiting at most ``lock_timeout`` in all.

    ``lock_timeout`` applies to each table's lock separately, and while we
    wait for the second table the application queues behind the first one
    we hold: with the statement itself bounded by the same value, nobody
    waits longer than one ``lock_timeout``.  A statement timeout (57014) is
    retried like a lock timeout.  PostgreSQL >= 13 times each statement of a
    multi-statement string separately, so the limit ends with the LOCK.
    """
    lock = sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.SQL(", ").join(tables))
    if len(tables) == 1:
        return [lock]
    saved = sql.Literal(_SAVED_TIMEOUT)
    return [
        sql.SQL("SELECT set_config({}, current_setting('statement_timeout'), true)").format(saved),
        sql.SQL("SELECT set_config('statement_timeout', current_setting('lock_timeout'), true)"),
        lock,
        sql.SQL("SELECT set_config('statement_timeout', current_setting({}), true)").format(saved),
    ]
