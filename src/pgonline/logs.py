"""structlog configuration: readable lines on a terminal, JSON lines for machines.

Logs go to stderr so that stdout carries only results (plans, tables).
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

from pgonline.connection import redact

LogFormat = Literal["human", "json"]


def _redact_values(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    # A DSN can reach a log line through an error message; passwords never may.
    for key, value in event.items():
        if isinstance(value, str) and ("password" in value or "://" in value):
            event[key] = redact(value)
    return event


def configure(fmt: LogFormat = "human", *, verbose: bool = False) -> None:
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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
