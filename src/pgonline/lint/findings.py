"""What the linter reports: a finding at ``file:line:column`` with a code and a help line."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """``error``: the statement locks or breaks production; ``warning``: likely a mistake."""

    WARNING = "warning"
    ERROR = "error"

    @property
    def rank(self) -> int:
        return 1 if self is Severity.WARNING else 2


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    column: int
    severity: Severity
    code: str
    message: str
    help: str

    def sort_key(self) -> tuple[str, int, int, str]:
        return (self.path, self.line, self.column, self.code)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path, "line": self.line, "column": self.column,
            "severity": self.severity.value, "code": self.code,
            "message": self.message, "help": self.help,
        }
