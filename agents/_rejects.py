"""The reject file, ``<state_dir>/rejects.csv``: which source records were not sent, and why.

One row per rejected record: its place in the source (the line number of a CSV file, the row's
ordinal within its read of a database), the field at fault and the reason in plain words. Never
the value, the identifier or anything else from the record, so the file is safe to show to whoever
fixes the export. The agent keeps every reject in its state (agents/_state.py) and rewrites this
file from there at the end of each run: written beside, then renamed over the old one.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from agents._state import RejectRow
from agents.errors import ConfigError

REJECTS_FILE = "rejects.csv"
HEADER = ("line", "field", "reason")


def write_reject_file(state_dir: Path, rows: Iterable[RejectRow]) -> Path:
    """Replace <state_dir>/rejects.csv with `rows`; returns its path."""
    path = state_dir / REJECTS_FILE
    try:
        fd, name = tempfile.mkstemp(dir=state_dir, prefix=".rejects-", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the reject file ({exc.strerror or exc})") from exc
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(HEADER)
            writer.writerows((row.line, row.field, row.reason) for row in rows)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the reject file ({exc.strerror or exc})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
