"""One release at a time per (agreement, dataset) within a gateway process.

A release is checked against the agreement's release ledger, then written with its audit entry;
a release that another one wrote to the ledger in between is checked again (``LedgerMoved``,
gateway/server/_query.py). Every release moves the ledger (a repeat moves its cells' release
watermark), so twenty analysts of one agreement racing each other would mostly be checking
again: the load run's clean minute saw answers take over 30 s. Taken in turn within a process,
releases do not race each other at all; only releases from other gateway processes on the same
database still can, and those the ledger's version check catches as before.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReleaseLocks:
    """A lock per key, made on first use (keys are agreements and datasets: a handful)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, str], threading.Lock] = {}

    @contextmanager
    def hold(self, agreement_id: str, dataset: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault((agreement_id, dataset), threading.Lock())
        with lock:
            yield
