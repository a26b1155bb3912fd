"""structlog configuration: readable lines on a terminal, JSON lines for machines.

Logs go to stderr so that stdout carries only results (plans, tables).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

from pgonline.redaction import redact

LogFormat = Literal["human", "json"]


def _redact_values(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # A DSN can reach a log line through an error message; passwords never may.
    for key, value in event.items():
        if isinstance(value, str) and ("password" in value or "://" in value):
            event[key] = redact(value)
    return event


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is *now* (it may be replaced after configure)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _stderr_logger(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def _drop_unset(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    # Readable lines say what is, not what is not: no `paused=None`.
    for key in [k for k, v in event.items() if v is None]:
        del event[key]
    return event


_format: list[LogFormat] = ["human"]


def current_format() -> LogFormat:
    """The format configured last (the CLI's errors follow it)."""
    return _format[0]


def configure(fmt: LogFormat = "human", *, verbose: bool = False) -> None:
    _format[0] = fmt
    level = logging.DEBUG if verbose else logging.INFO
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_values,
            *([] if fmt == "json" else [_drop_unset]),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
