"""Parsing many files without the per-attribute validation of pglast's AST classes.

``pglast.parse_sql`` builds one Python object per parse-tree node, and every
attribute it sets goes through ``pglast.ast.Node.__setattr__``, which checks
the value's type against the slot's C type and adapts it (dict to node, list
to tuple, int to enum...).  That check exists for nodes built by hand or from
JSON; for the parser's own output it converts nothing, because the builder
(pglast's ``ast.pyx``) already passes values of the final types: enum members,
``bool(...)``, ``chr(...)``, tuples of nodes, sets for bitmapsets.  The one
exception is ``Boolean.boolval``, passed as the C int, so ``Boolean`` keeps
its check.  On the 1,500-file benchmark the checks were nine tenths of the
parse time (110 of 125 ms).

Inside :func:`parser_output_only`, nodes are built with the plain ``object``
attribute assignment.  The trees are the same, value for value and type for
type: ``tests/test_lint_shortcuts.py`` compares both on every lint corpus, and
reads pglast's ``ast.pyx`` to check that no other builder passes a value the
check would adapt.  Switching costs about 0.3 ms (CPython updates the slot of
all 260 node classes), so it is done once around a batch of files, not per
statement.  Only parsing may happen inside: a node built by hand there would
skip its checks.  The linter runs on one thread, and the switch is undone
when the block ends, also by an exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pglast import ast

_VALIDATING_SETATTR = ast.Node.__setattr__
# Node classes whose builder passes a value the check adapts (see above).
STILL_CHECKED: tuple[type, ...] = (ast.Boolean,)


@contextmanager
def parser_output_only() -> Iterator[None]:
    """While this lasts, ``pglast.parse_sql`` builds its nodes without re-checking them."""
    node_class: Any = ast.Node
    if node_class.__setattr__ is not _VALIDATING_SETATTR:  # nested: already switched
        yield
        return
    node_class.__setattr__ = object.__setattr__
    for cls in STILL_CHECKED:
        cls.__setattr__ = _VALIDATING_SETATTR  # type: ignore[method-assign]
    try:
        yield
    finally:
        for cls in STILL_CHECKED:
            del cls.__setattr__  # inherits Node's again
        node_class.__setattr__ = _VALIDATING_SETATTR
