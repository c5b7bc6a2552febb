"""The gateway's timed audit checkpoint: an idle log's newest entry gets signed within the interval."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.audit import AuditDraft, CheckpointPolicy
from gateway.catalogue import Catalogue
from gateway.server._checkpointer import Checkpointer
from gateway.store import open_store

CATALOGUE = Catalogue.from_data({"agencies": {"health": {}}, "catalogue": {"datasets": {}}})


def test_an_idle_log_is_signed_by_the_timer_and_the_thread_stops(tmp_path: Path) -> None:
    """With no count trigger, the timer signs entry 3 within a few intervals, and stops on stop()."""
    policy = CheckpointPolicy(Ed25519PrivateKey.generate(), every=0, seconds=3600)
    store = open_store(f"sqlite:///{tmp_path / 'g.db'}", CATALOGUE, checkpoints=policy)
    try:
        for i in range(3):  # the first entry is signed on append (no checkpoint yet); 2, 3 are not
            store.append_audit(
                AuditDraft(f"d{i}", "2026-01-01T00:00:00Z", "p", "spiffe://x", "health", "query", "deny")
            )
        assert [c.seq for c in store.audit_checkpoints()] == [1]
        checkpointer = Checkpointer(store, 0.05)
        checkpointer.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and [c.seq for c in store.audit_checkpoints()] != [1, 3]:
            time.sleep(0.05)
        checkpointer.stop()
        assert [c.seq for c in store.audit_checkpoints()] == [1, 3]
        assert checkpointer._thread is not None and not checkpointer._thread.is_alive()
    finally:
        store.close()
