"""The reject file, ``<state_dir>/rejects.csv``: which source lines were not sent, and why.

One row per rejected record: the source line number, the field at fault and the reason in
plain words. Never the value, the identifier or anything else from the record, so the file is
safe to show to whoever fixes the export. It is rewritten by every run (written beside, then
renamed over the old one when the run completes; a failed run leaves the previous file).
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from agents.errors import ConfigError

REJECTS_FILE = "rejects.csv"
HEADER = ("line", "field", "reason")


class RejectLog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / REJECTS_FILE
        self.count = 0

    def __enter__(self) -> Self:
        try:
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=".rejects-", suffix=".tmp")
        except OSError as exc:
            raise ConfigError(f"{self.path}: cannot write the reject file ({exc.strerror or exc})") from exc
        self._tmp = Path(name)
        self._handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(HEADER)
        return self

    def add(self, line: int, field: str, reason: str) -> None:
        self.count += 1
        self._writer.writerow((line, field, reason))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._handle.close()
        if exc_type is None:
            try:
                self._tmp.replace(self.path)
            except OSError as error:
                self._tmp.unlink(missing_ok=True)
                raise ConfigError(
                    f"{self.path}: cannot write the reject file ({error.strerror or error})"
                ) from error
        else:
            self._tmp.unlink(missing_ok=True)
