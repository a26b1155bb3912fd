"""Plans and steps: the plain data a strategy produces and the executor runs.

A :class:`Plan` is fully rendered SQL text plus metadata.  It is stored in the
journal as JSON when a job starts, so that resuming a job runs *exactly* the
plan that was started, even though the catalog has since changed under it
(for example the new column now exists).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from psycopg import sql

from pgonline.sql.render import render


class Phase(StrEnum):
    """Where a step sits in an expand → backfill → contract change."""

    EXPAND = "expand"
    BACKFILL = "backfill"
    CONTRACT = "contract"


class LockLevel(StrEnum):
    """The strongest table-level lock a step takes on its target."""

    NONE = "NONE"
    ACCESS_SHARE = "ACCESS SHARE"
    ROW_EXCLUSIVE = "ROW EXCLUSIVE"
    SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
    SHARE = "SHARE"
    SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
    ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"

    @property
    def blocks(self) -> str:
        """What application traffic this lock blocks while it is held."""
        return _BLOCKS[self]


_BLOCKS: dict[LockLevel, str] = {
    LockLevel.NONE: "nothing",
    LockLevel.ACCESS_SHARE: "only ACCESS EXCLUSIVE (DDL)",
    LockLevel.ROW_EXCLUSIVE: "nothing for other rows; writers of the same rows wait per batch",
    LockLevel.SHARE_UPDATE_EXCLUSIVE: "other DDL and VACUUM; not reads or writes",
    LockLevel.SHARE: "writes (reads continue)",
    LockLevel.SHARE_ROW_EXCLUSIVE: "writes (reads continue)",
    LockLevel.ACCESS_EXCLUSIVE: "reads and writes, held only for a catalog update",
}


@dataclass(frozen=True)
class BackfillSpec:
    """A batched ``UPDATE table SET <set_sql> WHERE <where_sql>`` over a unique key.

    ``set_sql`` and ``where_sql`` are rendered SQL fragments whose identifiers
    went through ``psycopg.sql.Identifier`` and whose expressions were parsed
    as exactly one expression by pglast.
    """

    schema: str
    table: str
    key_columns: tuple[str, ...]
    set_sql: str
    where_sql: str | None = None


@dataclass(frozen=True)
class Step:
    """One unit of execution, journaled on its own.

    ``id`` is stable for a given plan (it is the journal's key for the step),
    ``done_if`` is a query returning one boolean that is true when the step's
    effect is already in place, which makes re-running a non-transactional
    step after a crash safe, and ``undo_sql`` reverses an expand step for
    ``online rollback``.  ``cleanup_sql`` runs (outside a transaction) before
    every attempt of a non-transactional step when ``cleanup_if`` returns true,
    to clear what a failed earlier attempt left behind, such as the INVALID
    index of an interrupted ``CREATE INDEX CONCURRENTLY``.  ``irreversible``
    says why rollback cannot undo the step once it has run (a dropped
    column's data, a cut-over that live writes have followed); rollback then
    refuses before undoing anything.

    ``gate`` says what must be true of the application before the step may
    run, when the step would break code that does not know the change (for
    example dropping the trigger that fills a NOT NULL column with no
    default for INSERTs that omit it).  A run of all phases stops before a
    gated step; the operator passes it by running its phase explicitly
    (``--phase``), which is the confirmation that the condition holds.
    """

    id: str
    phase: Phase
    description: str
    lock: LockLevel
    transactional: bool = True
    sql: str | None = None
    backfill: BackfillSpec | None = None
    done_if: str | None = None
    undo_sql: str | None = None
    why_safe: str = ""
    cleanup_if: str | None = None
    cleanup_sql: str | None = None
    gate: str | None = None
    irreversible: str | None = None
    # The same as cleanup_if/cleanup_sql, before every attempt of the undo (a
    # non-transactional rebuild that failed leaves an INVALID index, which
    # CREATE INDEX ... IF NOT EXISTS would otherwise take for the rebuilt one).
    undo_cleanup_if: str | None = None
    undo_cleanup_sql: str | None = None
    # The tables the step locks (quoted names), when they are not just the
    # plan's target: a change that spans the tables of a foreign key waits
    # for maintenance on each, and its lock watch looks at each.
    tables: tuple[str, ...] = ()
    # A VACUUM (ANALYZE) of ours after a backfill.  Its lock, SHARE UPDATE
    # EXCLUSIVE, conflicts with no read or write, so the executor lets it wait
    # in the lock queue rather than outside it: a queued request makes the
    # server cancel an autovacuum that blocks it after deadlock_timeout (an
    # anti-wraparound one excepted), where waiting outside would wait the
    # autovacuum out.  Throttled by --vacuum-cost-delay, skipped with --no-vacuum.
    vacuum: bool = False

    def __post_init__(self) -> None:
        if (self.sql is None) == (self.backfill is None):
            raise ValueError(f"step {self.id!r} needs exactly one of sql or backfill")
        if (self.cleanup_sql is None) != (self.cleanup_if is None):
            raise ValueError(f"step {self.id!r}: cleanup_sql and cleanup_if go together")
        if self.cleanup_sql is not None and self.transactional:
            raise ValueError(f"step {self.id!r}: only non-transactional steps need a cleanup")
        if (self.undo_cleanup_sql is None) != (self.undo_cleanup_if is None):
            raise ValueError(f"step {self.id!r}: undo_cleanup_sql and undo_cleanup_if go together")
        if self.undo_cleanup_sql is not None and self.undo_sql is None:
            raise ValueError(f"step {self.id!r}: an undo cleanup needs an undo")
        if self.vacuum and (self.transactional or self.sql is None):
            raise ValueError(f"step {self.id!r}: a VACUUM runs outside a transaction")

    @property
    def is_backfill(self) -> bool:
        return self.backfill is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Step:
        bf = data.get("backfill")
        return cls(
            id=data["id"],
            phase=Phase(data["phase"]),
            description=data["description"],
            lock=LockLevel(data["lock"]),
            transactional=bool(data.get("transactional", True)),
            sql=data.get("sql"),
            backfill=None
            if bf is None
            else BackfillSpec(
                schema=bf["schema"],
                table=bf["table"],
                key_columns=tuple(bf["key_columns"]),
                set_sql=bf["set_sql"],
                where_sql=bf.get("where_sql"),
            ),
            done_if=data.get("done_if"),
            undo_sql=data.get("undo_sql"),
            why_safe=data.get("why_safe", ""),
            cleanup_if=data.get("cleanup_if"),
            cleanup_sql=data.get("cleanup_sql"),
            gate=data.get("gate"),
            irreversible=data.get("irreversible"),
            undo_cleanup_if=data.get("undo_cleanup_if"),
            undo_cleanup_sql=data.get("undo_cleanup_sql"),
            tables=tuple(data.get("tables", ())),
            vacuum=bool(data.get("vacuum", False)),
        )


def fingerprint(kind: str, target: str, args: dict[str, Any]) -> str:
    """Identifies "the same command": kind, target and canonical arguments.

    Computable before planning, so that re-running a command whose job is
    unfinished resumes that job instead of planning afresh against a
    half-changed catalog.
    """
    canon = json.dumps({"kind": kind, "target": target, "args": args}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one change, plus why this plan was chosen."""

    kind: str
    target: str
    args: dict[str, Any]
    steps: tuple[Step, ...]
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        ids = [s.id for s in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate step ids in plan: {ids}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.kind, self.target, self.args)

    def other_tables(self) -> tuple[str, ...]:
        """Tables besides the target that the plan changes (quoted names), in plan order:
        those its steps lock, and those its backfills write."""
        names: list[str] = []
        for s in self.steps:
            names += s.tables
            if s.backfill is not None:
                names.append(render(sql.Identifier(s.backfill.schema, s.backfill.table)))
        return tuple(n for n in dict.fromkeys(names) if n != self.target)

    def phases(self) -> list[Phase]:
        return [p for p in Phase if any(s.phase is p for s in self.steps)]

    def only_phase(self, phase: Phase | None) -> tuple[Step, ...]:
        return self.steps if phase is None else tuple(s for s in self.steps if s.phase is phase)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "args": self.args,
            "steps": [s.to_dict() for s in self.steps],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            kind=data["kind"],
            target=data["target"],
            args=dict(data["args"]),
            steps=tuple(Step.from_dict(s) for s in data["steps"]),
            notes=tuple(data.get("notes", ())),
        )

    def to_text(self) -> str:
        """The dry-run rendering: every step with phase, lock, transactionality and SQL."""
        lines = [f"Plan: {self.kind} on {self.target}"]
        lines += [f"  note: {n}" for n in self.notes]
        for i, s in enumerate(self.steps, 1):
            tx = "in a transaction" if s.transactional else "outside a transaction"
            lines.append("")
            lines.append(f"{i}. [{s.phase}] {s.id}: {s.description}")
            lines.append(f"   lock: {s.lock} (blocks {s.lock.blocks}); {tx}")
            if s.why_safe:
                lines.append(f"   safe because: {s.why_safe}")
            if s.gate:
                lines.append(f"   waits for you: {s.gate} (run with --phase {s.phase} to go on)")
            if s.irreversible:
                lines.append(f"   irreversible: {s.irreversible}")
            if s.sql is not None:
                lines += ["   " + ln for ln in s.sql.splitlines()]
            if s.backfill is not None:
                b = s.backfill
                keys = ", ".join(b.key_columns)
                where = f" AND ({b.where_sql})" if b.where_sql else ""
                table = render(sql.Identifier(b.schema, b.table))
                batch = (f"({keys}) IN <next keyset batch>" if b.key_columns
                         else "ctid >= <first page> AND ctid < <end page>")
                lines.append(  # display text only, never executed
                    f"   UPDATE {table} SET {b.set_sql} WHERE {batch}{where}"  # noqa: S608
                )
        return "\n".join(lines)
