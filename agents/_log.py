"""The agent's log: one line per event on stderr, JSON for machines or plain text for people.

Events carry counts, batch ids, positions in the source and error messages — never a value read
from a record, an identifier or a pseudonym (the pipeline has no call that could log one: it logs
summaries and the agent's own exception messages, which are written without record content).

    log = get_logger()
    log.info("push.finished", read=20000, sent=19996)
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

LOGGER_NAME = "datashare.agent"
LogFormat = Literal["json", "text"]


class EventLogger:
    """A thin structured front on a stdlib logger: an event name plus keyword fields."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def _log(self, level: int, event: str, fields: dict[str, object]) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields})

    def debug(self, event: str, **fields: object) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._log(logging.ERROR, event, fields)


def get_logger() -> EventLogger:
    return EventLogger(logging.getLogger(LOGGER_NAME))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        detail = " ".join(f"{key}={value}" for key, value in fields.items())
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return f"{stamp} {record.levelname.lower():7} {record.getMessage()} {detail}".rstrip()


def configure_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Send the agent's events to `stream` (stderr) at `level`; called once by the command line."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
