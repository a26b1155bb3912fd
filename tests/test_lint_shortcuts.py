"""The linter's speed shortcuts change no finding (issue #11, item 7).

Three shortcuts make `online lint` of 1,500 files fast; each has a slow twin
that the linter used before, and every corpus we have must come out the same
through both:

* pglast's trees built without its per-attribute validation (lint/fast_ast.py)
  are the trees built with it, value for value and type for type;
* a file without comments is parsed without the lexer pass
  (source._parse_comment_free), and gets the statements and findings the lexer
  path gives;
* files are read with one raw read (engine._read_fast) into the text, and
  refused with the messages, that ``Path.read_text`` gives.

The corpora: every lint fixture, the migration histories in every layout, the
SQL of the rule tests (tests/test_lint_rules.py), and each of them again with
its comments removed, so that the comment-free path sees them all.
"""

from __future__ import annotations

import ast as pyast
import contextlib
import json
from pathlib import Path
from typing import Any

import pglast
import pytest
from pglast import ast
from pglast.parser import ParseError

from pgonline.errors import UsageError
from pgonline.lint import LintOptions, discover, engine, lint_texts, source
from pgonline.lint.fast_ast import parser_output_only
from pgonline.lint.findings import Finding, Severity
from pgonline.lint.output import as_json
from pgonline.lint.tokens import lex
from tests.support.histories import write_history

TESTS = Path(__file__).parent
LAYOUTS = ["seed", "golang-migrate", "dbmate", "flyway"]


def _rule_test_sql() -> list[str]:
    """Every SQL literal of the rule tests (with and without the lock_timeout their helper adds)."""
    tree = pyast.parse((TESTS / "test_lint_rules.py").read_text())
    found = {node.value for node in pyast.walk(tree)
             if isinstance(node, pyast.Constant) and isinstance(node.value, str)
             and any(word in node.value.upper() for word in ("ALTER ", "CREATE ", "DROP ", "UPDATE ",
                                                            "SET ", "BEGIN", "SELECT ", "RESET "))}
    return sorted(found | {f"SET lock_timeout = '2s';\n{sql}" for sql in found})


def _fixture_sql() -> list[str]:
    return [p.read_text() for p in sorted((TESTS / "fixtures").rglob("*.sql"))]


def _without_comments(text: str) -> str:
    tokens, _ = lex(text)
    out, at = [], 0
    for tok in tokens:
        if tok.is_comment:
            out.append(text[at:tok.start])
            at = tok.end
    return "".join(out) + text[at:]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    texts = _fixture_sql() + _rule_test_sql()
    for layout in LAYOUTS:
        root = write_history(tmp_path_factory.mktemp(layout), layout)
        texts += [p.read_text() for p in sorted(Path(root).rglob("*.sql"))]
    texts += [_without_comments(t) for t in texts]
    return texts


def _same_tree(a: Any, b: Any, where: str = "") -> None:
    assert type(a) is type(b), where
    if isinstance(a, ast.Node):
        for attr in a:
            _same_tree(getattr(a, attr), getattr(b, attr), f"{where}.{attr}")
    elif isinstance(a, tuple | list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same_tree(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _parse(text: str) -> Any:
    try:
        return pglast.parse_sql(text)
    except ParseError as exc:
        return ("ParseError", exc.args)


def test_trees_built_without_validation_equal_validated_trees(corpus: list[str]) -> None:
    assert len(corpus) > 300
    for text in corpus:
        checked = _parse(text)
        with parser_output_only():
            trusted = _parse(text)
        _same_tree(checked, trusted, text[:60])


def test_validation_is_back_after_the_block_even_when_parsing_fails() -> None:
    with pytest.raises(ParseError), parser_output_only():
        pglast.parse_sql("SELEC 1")
    with pytest.raises(ValueError):
        ast.RangeVar(relname=42)  # the checks are on again


def _slow_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(source, "_parse_comment_free", lambda text: None)
    monkeypatch.setattr(engine, "parser_output_only", contextlib.nullcontext)


@pytest.mark.parametrize("pg", [10, 14, 18])
def test_findings_are_those_of_the_slow_paths(corpus: list[str], pg: int,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    files = [(f"{i:04d}.sql", text) for i, text in enumerate(corpus)]
    fast = lint_texts(files, LintOptions(pg_major=pg))
    with monkeypatch.context() as m:
        _slow_paths(m)
        slow = lint_texts(files, LintOptions(pg_major=pg))
    assert len(fast) > 200
    assert fast == slow


def test_comment_free_statements_are_those_of_the_lexer_path(corpus: list[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    shortcut = 0
    for text in corpus:
        try:
            items = source._parse_comment_free(text)
        except ParseError:
            continue
        if items is None:
            continue
        shortcut += 1
        with monkeypatch.context() as m:
            m.setattr(source, "_parse_comment_free", lambda text: None)
            lexed = source.parse_file("m.sql", text)
        assert [(i.start, i.end, i.base) for i in items] == \
               [(i.start, i.end, i.base) for i in lexed.items], text  # type: ignore[union-attr]
        assert lexed.ignores == []
    assert shortcut > 100


@pytest.mark.parametrize("data", [
    b"SELECT 1;\n", b"SELECT 1;\r\nSELECT 2;\r\n", b"SELECT 1;\rSELECT 2;\r", b"\xef\xbb\xbfSELECT 1;",
    b"", "SELECT 'caf\u00e9';\r\n".encode(), b"a\r\r\n\n\rb",
])
def test_files_are_read_as_text_mode_reads_them(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "001.sql"
    path.write_bytes(data)
    assert [f.text for f in discover([str(tmp_path)])] == [path.read_text(encoding="utf-8-sig")]


def test_a_file_that_is_not_utf8_is_refused_as_before(tmp_path: Path) -> None:
    path = tmp_path / "001.sql"
    path.write_bytes(b"SELECT 1;\n-- caf\xe9\n")
    with pytest.raises(UnicodeDecodeError) as decode:
        path.read_text(encoding="utf-8-sig")
    with pytest.raises(UsageError) as refused:
        discover([str(tmp_path)])
    assert refused.value.message == \
        f"{path}: not UTF-8 text ({decode.value.reason} at byte {decode.value.start})"


def test_a_directory_lists_its_sql_files_as_path_suffix_sees_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("10_b.sql", "2_a.sql", ".sql", "x.SQL", "notes.txt", "3_c.sql.bak"):
        (tmp_path / name).write_text("SELECT 1;")
    (tmp_path / "4_dir.sql").mkdir()
    (tmp_path / "5_link.sql").symlink_to(tmp_path / "2_a.sql")
    (tmp_path / "6_dangling.sql").symlink_to(tmp_path / "missing.sql")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "1_x.sql").write_text("SELECT 1;")
    monkeypatch.chdir(tmp_path)
    for given in (str(tmp_path), f"{tmp_path}/", ".", "./", "sub", "sub//", "../" + tmp_path.name):
        directory = Path(given)
        expected = sorted((p for p in directory.iterdir() if p.suffix == ".sql" and p.is_file()),
                          key=lambda p: engine._natural_key(p.name))
        assert [f.display for f in discover([given])] == [str(p) for p in expected], given
    assert [f.display for f in discover(["."])] == ["2_a.sql", "5_link.sql", "10_b.sql"]
    assert [f.display for f in discover(["sub//"])] == ["sub/1_x.sql"]


def test_json_output_is_json_dumps_with_indent_two() -> None:
    tricky = [Finding("dir/\u00e9 \"q\".sql", 3, 14, Severity.ERROR, "code-x",
                      "tab\there, newline\nthere, back\\slash, \u2603 and \x01", "help: 'quoted'"),
              Finding("b.sql", 1, 1, Severity.WARNING, "y", "", "")]
    for findings in ([], tricky[:1], tricky):
        assert as_json(findings) == json.dumps([f.to_json() for f in findings], indent=2)


def test_no_pglast_builder_passes_a_value_the_skipped_check_would_adapt() -> None:
    # The builders are generated code in pglast's ast.pyx: `cdef object v_attr = <expr>`
    # per attribute, then `ast.Class(v_...)`.  The check adapts bool, char, List*,
    # Bitmapset* and enum slots; each must already be built in its final form.
    import re

    from pglast import enums

    from pgonline.lint.fast_ast import STILL_CHECKED

    pyx = Path(pglast.__file__).with_name("ast.pyx").read_text()
    checked = 0
    cls: Any = None
    for line in pyx.splitlines():
        if m := re.match(r"cdef create_(\w+)\(", line):
            cls = getattr(ast, m.group(1))
            continue
        m = re.match(r"\s+cdef object v_(\w+) = (.*)$", line)
        if m is None or cls is None or cls in STILL_CHECKED:
            continue
        attr, expr = m.groups()
        ctype = cls.__slots__[attr].c_type
        final = {"bool": expr.startswith("bool("), "char": expr.startswith("chr("),
                 "List*": "_pg_list_to_tuple(" in expr, "Bitmapset*": "_pg_bitmapset_to_set(" in expr}
        if ctype in final:
            assert final[ctype], (cls, attr, expr)
        elif hasattr(enums, ctype):
            assert expr.startswith(f"getattr(enums, '{ctype}')("), (cls, attr, expr)
        checked += 1
    assert checked > 900
    # Direct constructor calls with a C value: only those of A_Const's values.
    direct = re.findall(r"ast\.(\w+)\(data\.", pyx)
    assert sorted(set(direct)) == ["BitString", "Boolean", "Float", "Integer", "String"]
