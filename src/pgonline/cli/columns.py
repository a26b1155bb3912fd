"""CLI commands for column changes: change-type, rename-column, drop-column."""

from __future__ import annotations

import functools
from typing import Any

import click

from pgonline.cli.main import report, run_async
from pgonline.cli.options import build_context, dsn_option, exec_options


def register(cli: click.Group) -> None:
    cli.add_command(change_type_cmd)
    cli.add_command(rename_column_cmd)
    cli.add_command(drop_column_cmd)


@click.command("change-type")
@click.argument("table")
@click.argument("column")
@click.argument("type_", metavar="NEWTYPE")
@click.option("--using", default=None, metavar="EXPR",
              help="Compute the new value from this expression (may use any column); "
              "default: COLUMN::NEWTYPE.")
@dsn_option
@exec_options
def change_type_cmd(table: str, column: str, type_: str, using: str | None, dsn: str | None,
                    **kw: Any) -> None:
    """Change COLUMN of TABLE to NEWTYPE: in place when no rewrite is needed, else via a
    shadow column, trigger, backfill and a milliseconds-long cut-over."""
    from pgonline.commands.change_type import change_type

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(change_type, ctx, table, column, type_, using=using)))


@click.command("rename-column")
@click.argument("table")
@click.argument("old")
@click.argument("new")
@dsn_option
@exec_options
def rename_column_cmd(table: str, old: str, new: str, dsn: str | None, **kw: Any) -> None:
    """Rename OLD to NEW so that old and new application code both work meanwhile.

    Run --phase expand, then --phase backfill, deploy code using NEW, then --phase contract.
    """
    from pgonline.commands.rename_column import rename_column

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(rename_column, ctx, table, old, new)))


@click.command("drop-column")
@click.argument("table")
@click.argument("column")
@click.option("--confirm", is_flag=True,
              help="Really drop it (and the dependent objects listed without this flag).")
@dsn_option
@exec_options
def drop_column_cmd(table: str, column: str, confirm: bool, dsn: str | None, **kw: Any) -> None:
    """Drop COLUMN of TABLE under lock_timeout, after listing what depends on it."""
    from pgonline.commands.drop_column import drop_column

    ctx = build_context(dsn, kw)
    report(run_async(functools.partial(drop_column, ctx, table, column, confirm=confirm)))
