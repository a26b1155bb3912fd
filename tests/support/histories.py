"""Migration histories of our own, the same 22 changes written in every layout.

Each has an enum (and an ``ALTER TYPE ... ADD VALUE``, which has no down:
PostgreSQL cannot remove an enum value), functions with ``;`` in their
bodies, a view, partial and expression indexes, columns, and a timestamp
column; the golang-migrate one uses timestamp versions and dialect files.
Nothing here is copied from another project.
"""

from __future__ import annotations

from pathlib import Path

COUNT = 22
NO_DOWN = 2  # the ADD VALUE migration


def _changes() -> list[tuple[str, str, str | None]]:
    """(name, up, down) of each migration, in order."""
    out: list[tuple[str, str, str | None]] = [
        ("create_people",
         "CREATE TYPE mood AS ENUM ('ok', 'bad');\n"
         "CREATE TABLE people (id bigserial PRIMARY KEY, name text NOT NULL, mood mood,\n"
         "                     created_at timestamptz NOT NULL DEFAULT now());\n",
         "DROP TABLE people;\nDROP TYPE mood;\n"),
        ("add_mood_meh", "ALTER TYPE mood ADD VALUE 'meh';\n", None),
        ("name_length_function",
         "CREATE FUNCTION name_length(p people) RETURNS int LANGUAGE plpgsql AS $$\n"
         "BEGIN\n  RETURN length(p.name);  -- a ';' inside the body\nEND;\n$$;\n",
         "DROP FUNCTION name_length(people);\n"),
        ("happy_people_view",
         "CREATE VIEW happy_people AS SELECT id, name FROM people WHERE mood = 'ok';\n",
         "DROP VIEW happy_people;\n"),
        ("recent_partial_index",
         "CREATE INDEX people_recent ON people (created_at) WHERE mood <> 'bad';\n",
         "DROP INDEX people_recent;\n"),
    ]
    for i in range(6, COUNT + 1):
        if i % 3 == 0:
            out.append((f"lower_name_index_{i}",
                        f"CREATE INDEX people_lower_{i} ON people (lower(name)) WHERE id > {i};\n",
                        f"DROP INDEX people_lower_{i};\n"))
        elif i % 3 == 1:
            out.append((f"add_score_{i}",
                        f"ALTER TABLE people ADD COLUMN score_{i} integer NOT NULL DEFAULT {i};\n",
                        f"ALTER TABLE people DROP COLUMN score_{i};\n"))
        else:
            out.append((f"touch_function_{i}",
                        f"CREATE FUNCTION touch_{i}() RETURNS trigger LANGUAGE plpgsql AS $$\n"
                        "BEGIN\n  NEW.name := trim(NEW.name);\n  RETURN NEW;\nEND;\n$$;\n",
                        f"DROP FUNCTION touch_{i}();\n"))
    return out


def write_history(directory: Path, layout: str) -> Path:
    """The 22 migrations in ``layout``: seed, golang-migrate, dbmate or flyway."""
    directory.mkdir(parents=True, exist_ok=True)
    for n, (name, up, down) in enumerate(_changes(), start=1):
        if layout == "seed":
            (directory / f"{n:03d}_{name}.sql").write_text(up)
            if down:
                (directory / f"{n:03d}_{name}_down.sql").write_text(down)
        elif layout == "golang-migrate":
            version = 20240101000000 + n * 3_600  # timestamps: gaps by design
            stem = f"{version}_{name.replace('_', '-')}"  # dashes, as the tool allows
            if n % 4 == 0:
                # Dialect files: ours is chosen, the others are ignored.
                (directory / f"{stem}.postgres.up.sql").write_text(up)
                (directory / f"{stem}.mysql.up.sql").write_text("NOT POSTGRESQL;\n")
                (directory / f"{stem}.up.sql").write_text("SELECT 'generic fallback';\n")
                if down:
                    (directory / f"{stem}.postgres.down.sql").write_text(down)
            else:
                (directory / f"{stem}.up.sql").write_text(up)
                if down:
                    (directory / f"{stem}.down.sql").write_text(down)
        elif layout == "dbmate":
            text = f"-- migrate:up\n{up}\n" + (f"-- migrate:down\n{down}" if down else "")
            (directory / f"{20240101000000 + n * 60}_{name}.sql").write_text(text)
        elif layout == "flyway":
            # 1 ... 10, then 10.1 ... 10.12: part by part, 10.10 comes after 10.9.
            version = f"10.{n - 10}" if n > 10 else str(n)
            (directory / f"V{version}__{name}.sql").write_text(up)
            if down:
                (directory / f"U{version}__{name}.sql").write_text(down)
        else:
            raise ValueError(layout)
    return directory
