"""The README's strategy catalogue is the registry's, and every command has a doc page."""

from __future__ import annotations

from pathlib import Path

from pgonline.devtools.strategy_index import render_index, replace_index
from pgonline.registry import known_commands, known_strategies

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_catalogue_is_generated_from_the_registry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render_index() in readme, (
        "README.md is stale: run `python -m pgonline.devtools.strategy_index README.md`")
    assert replace_index(readme) == readme


def test_every_change_command_has_its_doc_page_and_a_row():
    index = render_index()
    for kind, declared in known_commands().items():
        doc = declared.doc or kind
        assert (ROOT / "docs" / "strategies" / f"{doc}.md").is_file(), kind
        assert f"| `{kind} " in index or f"| `{kind}` " in index, kind
        assert declared.replaces and declared.does, kind


def test_only_planner_only_kinds_have_no_command():
    # create-index is what `migrate up --online` plans for a definition add-index cannot spell.
    assert set(known_strategies()) - set(known_commands()) == {"create-index"}


def test_every_declared_parse_takes_exactly_its_declared_parameters():
    import inspect

    from pgonline.registry import Arg

    for kind, declared in known_commands().items():
        positional = [None for p in declared.params if isinstance(p, Arg)]
        options = {p.name: None for p in declared.params if not isinstance(p, Arg)}
        # Raises TypeError on a parameter parse does not take (or lacks).
        inspect.signature(declared.parse).bind(*positional, **options)
        assert not inspect.iscoroutinefunction(declared.parse), kind  # pure, before connecting
        assert inspect.iscoroutinefunction(declared.gather), kind


def test_a_change_kind_is_one_module_parse_and_planner_side_by_side():
    from pgonline.registry import planner

    for kind, declared in known_commands().items():
        module = planner(kind).__module__
        assert module.startswith("pgonline.strategies."), kind
        assert declared.parse.__module__ == module, kind
        # add-primary-key gathers exactly what add-unique does (duplicates, the name's owner).
        assert declared.gather.__module__ in (module, "pgonline.strategies.add_unique"), kind
