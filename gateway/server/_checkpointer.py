"""The audit log's timed checkpoint: every ``[audit] checkpoint_seconds`` the newest entry is
signed unless a checkpoint covers it already, so an idle log's last entries do not stay unsigned
until the next request (the count trigger runs in the append itself, gateway.store._sql)."""

from __future__ import annotations

import threading

import structlog

from gateway.errors import GatewayError
from gateway.store._base import Store

log = structlog.get_logger("gateway.audit")


class Checkpointer:
    def __init__(self, store: Store, interval_s: float) -> None:
        self._store = store
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._interval_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="audit-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def tick(self) -> None:
        """One check: sign the head if it is not covered; a failure is logged, and tried again."""
        try:
            checkpoint = self._store.checkpoint_audit_head()
        except GatewayError as exc:
            log.error("audit_checkpoint_failed", error=type(exc).__name__)  # noqa: TRY400 - the store logged the cause
            return
        if checkpoint is not None:
            log.info("audit_checkpoint", seq=checkpoint.seq, key_id=checkpoint.key_id)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.tick()
