"""Migration directories for the ``online migrate`` tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

SEED_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "seed_migrations"

# The seed's 006 up file declares a *partial* UNIQUE constraint, which
# PostgreSQL's grammar does not have; a partial unique index is the fix.
SEED_BAD_LINES = (",\n    CONSTRAINT unique_primary_photo UNIQUE (user_id, is_primary) "
                  "WHERE is_primary = true\n);")
SEED_FIXED_LINES = (
    "\n);\n\n-- One primary photo per user: a partial unique index (a UNIQUE constraint\n"
    "-- cannot have a WHERE clause).\n"
    "CREATE UNIQUE INDEX IF NOT EXISTS unique_primary_photo ON user_photos (user_id) "
    "WHERE is_primary;"
)


def copy_seed(tmp: Path, *, upto: int | None = None) -> Path:
    target = tmp / "migrations"
    target.mkdir()
    for f in sorted(SEED_DIR.iterdir()):
        if upto is None or int(f.name[:3]) <= upto:
            shutil.copy(f, target / f.name)
    return target


def fix_seed_006(directory: Path) -> None:
    path = directory / "006_add_user_photos.sql"
    text = path.read_text()
    assert SEED_BAD_LINES in text
    path.write_text(text.replace(SEED_BAD_LINES, SEED_FIXED_LINES))


def write_chain(directory: Path, count: int, *, golang: bool = False, width: int = 3) -> Path:
    """``count`` migrations: a table, then columns, indexes, a view and a function on it."""
    directory.mkdir(parents=True, exist_ok=True)
    for n in range(1, count + 1):
        if n == 1:
            name = "create_items"
            up = ("BEGIN;\nCREATE TABLE items (id bigserial PRIMARY KEY, label text NOT NULL);\n"
                  "INSERT INTO items (label) SELECT 'item ' || g FROM generate_series(1, 50) g;\n"
                  "COMMIT;\n")
            down = "DROP TABLE items;\n"
        elif n % 4 == 0:
            name = f"add_index_{n}"
            up = f"CREATE INDEX items_label_{n}_idx ON items (label, id);\n"
            down = f"DROP INDEX items_label_{n}_idx;\n"
        elif n % 5 == 0:
            name = f"add_view_{n}"
            up = (f"CREATE VIEW items_v{n} AS SELECT id, label FROM items;\n"  # noqa: S608
                  f"CREATE FUNCTION items_f{n}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                  "BEGIN\n  NEW.label := trim(NEW.label);  -- a ';' in a body\n  RETURN NEW;\nEND;\n$$;\n")
            down = f"DROP FUNCTION items_f{n}();\nDROP VIEW items_v{n};\n"
        else:
            name = f"add_column_{n}"
            up = f"ALTER TABLE items ADD COLUMN c{n} integer NOT NULL DEFAULT {n};\n"
            down = f"ALTER TABLE items DROP COLUMN c{n};\n"
        stem = f"{n:0{width}d}_{name}"
        up_name, down_name = ((f"{stem}.up.sql", f"{stem}.down.sql") if golang
                              else (f"{stem}.sql", f"{stem}_down.sql"))
        (directory / up_name).write_text(f"-- Migration: {stem}\n{up}")
        (directory / down_name).write_text(f"-- Migration Rollback: {stem}\n{down}")
    return directory


def tracking_rows(db: psycopg.Connection[Any], table: str = "schema_migrations"
                  ) -> list[tuple[Any, ...]]:
    query = sql.SQL("SELECT version, dirty FROM {} ORDER BY version").format(sql.Identifier(table))
    return db.execute(query).fetchall()


def relations(db: psycopg.Connection[Any]) -> set[str]:
    rows = db.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'v', 'i', 'S')").fetchall()
    return {r[0] for r in rows}
