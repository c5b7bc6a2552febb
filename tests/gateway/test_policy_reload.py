"""Policy reload without restart: a real gateway on loopback (mTLS, SQLite) serving a copy of the
shipped bundle, edited on disk while it runs."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import structlog
import yaml

from gateway._pb import audit_pb2, audit_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.errors import ConfigError
from gateway.pki import PkiLayout, init_dev_pki
from gateway.policy._locate import shipped_bundle_dir
from gateway.server import Gateway, build_gateway

REPO = Path(__file__).resolve().parents[2]
AGREEMENT = "ag-2026-001"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"), listen="127.0.0.1:0")


@dataclass
class Served:
    gateway: Gateway
    layout: PkiLayout
    bundle: Path

    @property
    def agreements(self) -> Path:
        return self.bundle / "agreements" / "data.yaml"

    def edit(self, relative: str, change: Callable[[str], str]) -> None:
        path = self.bundle / relative
        before = path.read_text()
        after = change(before)
        assert after != before, f"the edit of {relative} changed nothing"
        path.write_text(after)

    def channel(self, profile_name: str) -> grpc.Channel:
        profile = ClientProfile.from_file(self.layout.client_profile(profile_name))
        return client_channel(dataclasses.replace(profile, address=f"127.0.0.1:{self.gateway.port}"))

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.gateway.shared.metrics.registry.get_sample_value(name, labels or {})

    def serving(self) -> str:
        return self.gateway.shared.policy.revision


def _serve(layout: PkiLayout, tmp_path: Path, interval_s: int = 0) -> Served:
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    settings = GatewaySettings.from_file(layout.gateway_config)
    settings = dataclasses.replace(
        settings,
        listen="127.0.0.1:0",
        store=dataclasses.replace(settings.store, url=f"sqlite:///{tmp_path / 'gateway.db'}"),
        policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=interval_s),
    )
    gateway = build_gateway(settings)
    gateway.start()
    return Served(gateway, layout, bundle)


@pytest.fixture
def served(pki: PkiLayout, tmp_path: Path) -> Iterator[Served]:
    running = _serve(pki, tmp_path)
    yield running
    running.gateway.stop(grace=0.5)


def _query() -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id=AGREEMENT,
        purpose="overdose-prevention",
        dataset="ed_visits",
        measures=[query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS)],
        group_by=["district"],
    )


def _suspend(text: str) -> str:
    return text.replace("  status: active\n", "  status: suspended\n", 1)


def _activate(text: str) -> str:
    return text.replace("  status: suspended\n", "  status: active\n", 1)


def _query_decisions(served: Served) -> list[audit_pb2.Decision]:
    stub = audit_pb2_grpc.AuditStub(served.channel("auditor"))
    entries = stub.ListDecisions(audit_pb2.ListDecisionsRequest(agreement_id=AGREEMENT))
    return [e for e in entries if e.action == "query"]


def test_a_suspended_agreement_denies_the_next_query_under_the_new_revision(served: Served) -> None:
    """After the agreement is suspended on disk and the bundle reloaded, the same query is denied
    with a reason naming the suspension, and the audit log stamps each decision with its revision."""
    analyst = query_pb2_grpc.QueryStub(served.channel("health-analyst"))
    before = served.serving()
    assert analyst.Aggregate(_query()).disclosure.policy_revision == before

    served.edit("agreements/data.yaml", _suspend)
    outcome = served.gateway.reload_policy()

    assert outcome.status == "reloaded"
    assert outcome.revision != before
    assert served.serving() == outcome.revision
    with pytest.raises(grpc.RpcError) as denied:
        analyst.Aggregate(_query())
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "suspended" in (denied.value.details() or "")
    logged = [(d.outcome, d.policy_revision) for d in _query_decisions(served)]
    assert logged == [("allow", before), ("deny", outcome.revision)]
    assert served.metric("datashare_policy_bundle_info", {"revision": outcome.revision}) == 1.0
    assert served.metric("datashare_policy_reloads_total", {"outcome": "reloaded"}) == 1.0


def test_a_broken_rego_file_keeps_the_last_good_revision_and_a_fix_is_picked_up(served: Served) -> None:
    """A Rego syntax error leaves the last good revision deciding, logs the file and line and
    counts the failure; once the file is fixed the next reload serves the new revision."""
    analyst = query_pb2_grpc.QueryStub(served.channel("health-analyst"))
    good = served.serving()
    original = (served.bundle / "datashare" / "query.rego").read_text()
    lines = original.splitlines(keepends=True)
    broken_line = next(i for i, line in enumerate(lines) if line.startswith("default ")) + 1
    lines.insert(broken_line, "broken if {\n")  # an unclosed rule body
    (served.bundle / "datashare" / "query.rego").write_text("".join(lines))

    with structlog.testing.capture_logs() as logs:
        outcome = served.gateway.reload_policy()

    assert (outcome.status, outcome.revision) == ("failed", good)
    failures = [e for e in logs if e["event"] == "policy_reload_failed"]
    assert len(failures) == 1
    assert re.search(r"datashare/query\.rego:\d+", failures[0]["error"]), failures[0]["error"]
    assert failures[0]["revision"] == good
    assert served.serving() == good
    assert analyst.Aggregate(_query()).disclosure.policy_revision == good
    assert served.metric("datashare_policy_reloads_total", {"outcome": "failed"}) == 1.0
    assert served.metric("datashare_policy_reload_failing") == 1.0

    (served.bundle / "datashare" / "query.rego").write_text(original + "\n# reviewed\n")
    fixed = served.gateway.reload_policy()

    assert fixed.status == "reloaded"
    assert fixed.revision not in (good, "")
    assert analyst.Aggregate(_query()).disclosure.policy_revision == fixed.revision
    assert served.metric("datashare_policy_reload_failing") == 0.0


def test_an_invalid_agreement_is_refused_naming_the_agreement(served: Served) -> None:
    """An agreement whose k falls below the consortium floor is not loaded; the error names the
    agreement and the old revision keeps serving."""
    good = served.serving()
    served.edit("agreements/data.yaml", lambda t: t.replace("  k: 10\n", "  k: 5\n", 1))

    outcome = served.gateway.reload_policy()

    assert (outcome.status, outcome.revision) == ("failed", good)
    assert AGREEMENT in outcome.error
    assert served.serving() == good


def test_a_new_dataset_needs_a_restart_and_is_refused_on_reload(served: Served) -> None:
    """Adding a dataset to the catalogue cannot be served without new tables, so the reload is
    refused with a message that says a restart is needed, naming the dataset."""
    good = served.serving()
    catalogue = served.bundle / "catalogue" / "data.yaml"
    data = yaml.safe_load(catalogue.read_text())
    data["datasets"]["ed_visits_copy"] = data["datasets"]["ed_visits"]
    catalogue.write_text(yaml.safe_dump(data))

    outcome = served.gateway.reload_policy()

    assert outcome.status == "failed"
    assert "ed_visits_copy" in outcome.error and "restart" in outcome.error
    assert served.serving() == good


def test_an_unchanged_bundle_is_not_swapped(served: Served) -> None:
    """Asking for a reload when nothing changed on disk keeps the same state object serving."""
    state = served.gateway.shared.policy

    outcome = served.gateway.reload_policy()

    assert (outcome.status, outcome.revision) == ("unchanged", state.revision)
    assert served.gateway.shared.policy is state


def test_the_poll_picks_up_an_edit_without_being_asked(pki: PkiLayout, tmp_path: Path) -> None:
    """With reload_interval_s = 1, an edit on disk is serving within a few seconds, untriggered."""
    running = _serve(pki, tmp_path, interval_s=1)
    try:
        before = running.serving()
        running.edit("agreements/data.yaml", _suspend)
        deadline = time.monotonic() + 10
        while running.serving() == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.serving() != before
    finally:
        running.gateway.stop(grace=0.5)


def test_queries_during_reloads_each_get_one_revisions_decision(served: Served) -> None:
    """While the agreement flips between active and suspended, reloaded each time, concurrent
    queries are each allowed under the active revision or denied under the suspended one, never
    an error, and each audit entry carries the revision that decided it."""
    active = served.serving()
    stop = threading.Event()
    seen: list[tuple[str, str]] = []
    failures: list[str] = []

    def ask() -> None:
        stub = query_pb2_grpc.QueryStub(served.channel("health-analyst"))
        while not stop.is_set():
            try:
                seen.append(("allow", stub.Aggregate(_query()).disclosure.policy_revision))
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                    failures.append(f"{exc.code()}: {exc.details()}")
                else:
                    seen.append(("deny", ""))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    suspended = ""
    try:
        for flip in range(10):
            served.edit("agreements/data.yaml", _suspend if flip % 2 == 0 else _activate)
            outcome = served.gateway.reload_policy()
            assert outcome.status == "reloaded"
            if flip == 0:
                suspended = outcome.revision
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    assert {o for o, _ in seen} == {"allow", "deny"}
    assert {r for o, r in seen if o == "allow"} == {active}
    logged = {(d.outcome, d.policy_revision) for d in _query_decisions(served)}
    assert logged == {("allow", active), ("deny", suspended)}
    assert len(_query_decisions(served)) == len(seen)


def test_reload_interval_is_read_from_the_policy_section(pki: PkiLayout, tmp_path: Path) -> None:
    """[policy] reload_interval_s defaults to 5 s, accepts 0 (SIGHUP only) and refuses negatives."""
    config = tmp_path / "gateway.toml"
    text = pki.gateway_config.read_text()
    config.write_text(text)
    assert GatewaySettings.from_file(config).policy.reload_interval_s == 5
    config.write_text(text.replace("[policy]\n", "[policy]\nreload_interval_s = 0\n", 1))
    assert GatewaySettings.from_file(config).policy.reload_interval_s == 0
    config.write_text(text.replace("[policy]\n", "[policy]\nreload_interval_s = -1\n", 1))
    with pytest.raises(ConfigError, match=r"policy\.reload_interval_s: must be from 0"):
        GatewaySettings.from_file(config)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics_revision(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    found = re.search(r'^datashare_policy_bundle_info\{revision="([0-9a-f]+)"\} 1\.0$', text, re.MULTILINE)
    return found.group(1) if found else ""


@pytest.mark.slow
def test_sighup_reloads_a_served_gateway_and_says_so(pki: PkiLayout, tmp_path: Path) -> None:
    """`gateway serve` reloads the bundle on SIGHUP: the log says policy_reloaded with the new
    revision and the metrics endpoint shows it, with no gRPC client involved."""
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    grpc_port, metrics_port = _free_port(), _free_port()
    env = {
        **os.environ,
        "DATASHARE_GATEWAY_GATEWAY_LISTEN": f"127.0.0.1:{grpc_port}",
        "DATASHARE_GATEWAY_STORE_URL": f"sqlite:///{tmp_path / 'gateway.db'}",
        "DATASHARE_GATEWAY_POLICY_BUNDLE": str(bundle),
        "DATASHARE_GATEWAY_POLICY_RELOAD_INTERVAL_S": "0",
        "DATASHARE_GATEWAY_OBSERVABILITY_METRICS_PORT": str(metrics_port),
    }
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--config", str(pki.gateway_config)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 30
        while "gateway_started" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)
        started = next(json.loads(x) for x in log_path.read_text().splitlines() if "gateway_started" in x)
        assert _metrics_revision(metrics_port) == started["revision"]

        (bundle / "agreements" / "data.yaml").write_text(
            _suspend((bundle / "agreements" / "data.yaml").read_text())
        )
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "policy_reloaded" not in log_path.read_text() and time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()
            time.sleep(0.05)

        reloaded = next(json.loads(x) for x in log_path.read_text().splitlines() if "policy_reloaded" in x)
        assert reloaded["previous"] == started["revision"]
        assert reloaded["revision"] not in ("", started["revision"])
        assert _metrics_revision(metrics_port) == reloaded["revision"]
    finally:
        process.terminate()
        process.wait(timeout=30)
