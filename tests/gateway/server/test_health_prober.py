"""The readiness prober fails closed: a dependency whose probe raises or hangs is down, and a hung
probe is not started again beside itself; each change of readiness is reported once."""

from __future__ import annotations

import threading

from gateway.server._health import MIN_DEADLINE_S, HealthProber, Readiness
from gateway.server._metrics import Metrics


def test_a_hanging_probe_is_down_until_it_returns_and_is_never_doubled() -> None:
    """A probe that blocks past the deadline marks its dependency down (and ready 0) while the other stays up; it is not started again while it hangs, and once it returns the next round is ready."""
    release, calls, changes = threading.Event(), [], []
    metrics = Metrics()

    def hangs() -> None:
        calls.append(1)
        release.wait(30)

    prober = HealthProber({"database": hangs, "policy_engine": lambda: None}, 0.05, metrics, changes.append)
    try:
        first = prober.probe(deadline_s=0.1)
        second = prober.probe(deadline_s=0.1)
        assert first == second == Readiness({"database": False, "policy_engine": True})
        assert len(calls) == 1
        assert metrics.registry.get_sample_value("datashare_ready") == 0
        assert metrics.registry.get_sample_value("datashare_dependency_up", {"dependency": "database"}) == 0
        release.set()
        assert prober.probe(deadline_s=MIN_DEADLINE_S).ready
        assert metrics.registry.get_sample_value("datashare_ready") == 1
        assert [c.ready for c in changes] == [False, True]
    finally:
        release.set()
        prober.stop()


def test_a_probe_that_raises_is_down() -> None:
    """A probe raising any exception marks its dependency down and the gateway not ready."""

    def refuses() -> None:
        raise ConnectionRefusedError("no")

    prober = HealthProber({"database": refuses}, 0.05, Metrics(), lambda _: None)
    try:
        assert not prober.probe().ready
    finally:
        prober.stop()
