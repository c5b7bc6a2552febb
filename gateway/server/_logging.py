"""structlog set up once at start-up: JSON lines (or console) to stderr, with the decision id and
principal bound by the interceptor. Nothing that identifies a person is ever a log field, and
tracebacks are plain: a pretty traceback with local variables could print a request's rows."""

from __future__ import annotations

import logging
import sys

import structlog


def _current_stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # the stream is looked up per logger, not bound once: a process that swaps sys.stderr
        # (a test runner, a daemon redirecting its output) must not keep writing to the old one
        logger_factory=_current_stderr_logger,
        cache_logger_on_first_use=False,
    )
