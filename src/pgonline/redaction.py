"""Passwords out of DSNs and of messages that quote one (never logged, never printed).

Kept apart from :mod:`pgonline.connection` so that the CLI can redact an
error message without importing the driver.
"""

from __future__ import annotations

import re

_URI_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """Remove passwords from a DSN (URI or key=value form) or a message quoting one."""
    text = _URI_PASSWORD.sub(r"\1***\3", text)
    return _KV_PASSWORD.sub(r"\1***", text)
