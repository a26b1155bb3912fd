"""CLI commands for indexes, constraints and batched updates.

``add-index``, ``drop-index``, ``set-not-null``, ``add-check``,
``add-foreign-key``, ``add-unique``, ``add-primary-key`` and ``backfill``:
each a thin click wrapper over one async command function, with the shared
execution options (``--dry-run``, ``--phase``, ``--lock-timeout``, batches).
"""

from __future__ import annotations

import functools
from typing import Any

import click

from pgonline.cli.main import report, run_async
from pgonline.cli.options import build_context, dsn_option, exec_options
from pgonline.strategies.add_foreign_key import ON_DELETE_ACTIONS


def register(cli: click.Group) -> None:
    for command in (add_index_cmd, drop_index_cmd, set_not_null_cmd, add_check_cmd,
                    add_foreign_key_cmd, add_unique_cmd, add_primary_key_cmd, backfill_cmd):
        cli.add_command(command)


@click.command("add-index")
@click.argument("table")
@click.argument("columns", nargs=-1)
@click.option("--name", default=None, help="Index name (default: <table>_<columns>_idx).")
@click.option("--unique", is_flag=True, help="A unique index (refused if duplicates exist).")
@click.option("--where", default=None, metavar="PRED", help="Partial index predicate.")
@click.option("--using", default=None, metavar="METHOD", help="Access method (btree, gin, ...).")
@click.option("--expression", "expressions", multiple=True, metavar="EXPR",
              help="An expression key, after the column keys (repeatable).")
@dsn_option
@exec_options
def add_index_cmd(table: str, columns: tuple[str, ...], name: str | None, unique: bool,
                  where: str | None, using: str | None, expressions: tuple[str, ...],
                  dsn: str | None, **kw: Any) -> None:
    """Build an index on TABLE (COLUMNS...) with CREATE INDEX CONCURRENTLY."""
    from pgonline.commands.add_index import add_index

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(add_index, ctx, table, columns, name=name, unique=unique,
                                       where=where, using=using, expressions=expressions)))


@click.command("drop-index")
@click.argument("name")
@dsn_option
@exec_options
def drop_index_cmd(name: str, dsn: str | None, **kw: Any) -> None:
    """Drop index NAME with DROP INDEX CONCURRENTLY (refused for constraint indexes)."""
    from pgonline.commands.drop_index import drop_index

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(drop_index, ctx, name)))


@click.command("set-not-null")
@click.argument("table")
@click.argument("column")
@click.option("--backfill", default=None, metavar="EXPR",
              help="Fill NULL rows with this expression first (in batches).")
@dsn_option
@exec_options
def set_not_null_cmd(table: str, column: str, backfill: str | None, dsn: str | None,
                     **kw: Any) -> None:
    """Make COLUMN of TABLE NOT NULL via a validated CHECK (no long lock)."""
    from pgonline.commands.set_not_null import set_not_null

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(set_not_null, ctx, table, column, backfill=backfill)))


@click.command("add-check")
@click.argument("table")
@click.argument("name")
@click.argument("expression", metavar="EXPR")
@dsn_option
@exec_options
def add_check_cmd(table: str, name: str, expression: str, dsn: str | None, **kw: Any) -> None:
    """Add CHECK (EXPR) named NAME to TABLE: NOT VALID, then VALIDATE."""
    from pgonline.commands.add_check import add_check

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(add_check, ctx, table, name, expression)))


@click.command("add-foreign-key")
@click.argument("table")
@click.argument("columns", nargs=-1, required=True)
@click.option("--references", required=True, metavar="REFTABLE[(COLS)]",
              help="Referenced table, optionally with columns (default: its primary key).")
@click.option("--name", default=None, help="Constraint name (default: <table>_<columns>_fkey).")
@click.option("--on-delete", type=click.Choice(ON_DELETE_ACTIONS, case_sensitive=False),
              default=None, help="Referential action on delete of the referenced row.")
@dsn_option
@exec_options
def add_foreign_key_cmd(table: str, columns: tuple[str, ...], references: str,
                        name: str | None, on_delete: str | None, dsn: str | None,
                        **kw: Any) -> None:
    """Add a FOREIGN KEY on TABLE (COLUMNS...): NOT VALID, then VALIDATE."""
    from pgonline.commands.add_foreign_key import add_foreign_key

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(add_foreign_key, ctx, table, columns,
                                       references=references, name=name, on_delete=on_delete)))


@click.command("add-unique")
@click.argument("table")
@click.argument("columns", nargs=-1, required=True)
@click.option("--name", default=None, help="Constraint name (default: <table>_<columns>_key).")
@click.option("--where", default=None, metavar="PRED", hidden=True)
@dsn_option
@exec_options
def add_unique_cmd(table: str, columns: tuple[str, ...], name: str | None, where: str | None,
                   dsn: str | None, **kw: Any) -> None:
    """Add a UNIQUE constraint on TABLE (COLUMNS...) via a concurrently built index."""
    from pgonline.commands.add_unique import add_unique

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(add_unique, ctx, table, columns, name=name, where=where)))


@click.command("add-primary-key")
@click.argument("table")
@click.argument("columns", nargs=-1, required=True)
@click.option("--name", default=None, help="Constraint name (default: <table>_pkey).")
@dsn_option
@exec_options
def add_primary_key_cmd(table: str, columns: tuple[str, ...], name: str | None,
                        dsn: str | None, **kw: Any) -> None:
    """Add a PRIMARY KEY on TABLE (COLUMNS...) via a concurrently built index."""
    from pgonline.commands.add_unique import add_unique

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(add_unique, ctx, table, columns, name=name,
                                       primary=True)))


@click.command("backfill")
@click.argument("table")
@click.option("--set", "set_", required=True, metavar="'COL = EXPR[, ...]'",
              help="Assignments, as in UPDATE ... SET.")
@click.option("--where", default=None, metavar="PRED", help="Only rows matching this predicate.")
@dsn_option
@exec_options
def backfill_cmd(table: str, set_: str, where: str | None, dsn: str | None, **kw: Any) -> None:
    """UPDATE TABLE SET ... [WHERE ...] in short, resumable keyset batches."""
    from pgonline.commands.backfill_set import backfill

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(backfill, ctx, table, set_, where=where)))
