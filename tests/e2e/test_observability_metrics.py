"""Prometheus metrics scraped from the gateway's own /metrics HTTP endpoint after real gRPC
traffic: each counter moves by exactly what the traffic did, and no label carries a caller's
identity, a pseudonym or a value."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from e2e_harness import Running, _Serve, budgeted_bundle, ed_rows, seal, subjects_query
from prometheus_client.parser import text_string_to_metric_families

from gateway._settings import GatewaySettings
from gateway.pki import PkiLayout

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> tuple[str, Samples]:
    """The endpoint's text, and every sample by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def budgeted(pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    """A gateway on SQLite serving /metrics, whose agreements allow one query a month."""
    bundle = budgeted_bundle(tmp_path, queries=1)
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings,
        policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=0),
        observability=dataclasses.replace(settings.observability, metrics_port=free_port()),
    )
    with _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki) as served:
        yield served


def test_metrics_endpoint_counts_ingest_queries_cells_and_budget_refusals(budgeted: Running) -> None:
    """After two stored batches, a duplicate, a tampered batch, a forbidden query, an answered one and one over budget, each counter on /metrics moved by exactly that much."""
    port = budgeted.gateway.metrics_port
    _, before = scrape(port)
    assert value(before, "datashare_ready") == 1
    agent = budgeted.ingest("agent:health")
    # D01: 12 people, D02: 15, D03: 3; the 17 other districts hold nobody
    first = seal(budgeted.layout, "health", "ed_visits", ed_rows("D01", 12) + ed_rows("D02", 15))
    agent.PushBatch(first)
    agent.PushBatch(seal(budgeted.layout, "health", "ed_visits", ed_rows("D03", 3)))
    agent.PushBatch(first)  # a resend: stored once
    tampered = seal(budgeted.layout, "health", "ed_visits", ed_rows("D04", 7))
    tampered.signature = bytes([tampered.signature[0] ^ 1]) + tampered.signature[1:]
    with pytest.raises(grpc.RpcError):
        agent.PushBatch(tampered)

    analyst = budgeted.query("health-analyst")
    with pytest.raises(grpc.RpcError) as forbidden:
        analyst.Aggregate(subjects_query(group_by=["district", "age_band"]))
    assert forbidden.value.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = analyst.Aggregate(subjects_query(group_by=["district"]))
    with pytest.raises(grpc.RpcError) as spent:
        analyst.Aggregate(subjects_query(group_by=["district"]))
    assert spent.value.code() == grpc.StatusCode.PERMISSION_DENIED
    withheld_in_answer = sum(1 for c in answer.cells if any(v.withheld for v in c.values))

    _, after = scrape(port)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ed = {"dataset": "ed_visits"}
    assert moved("datashare_ingest_records_total", **ed) == 30
    assert moved("datashare_ingest_batches_total", **ed, agency="health", outcome="stored") == 2
    assert moved("datashare_ingest_batches_total", **ed, agency="health", outcome="duplicate") == 1
    assert moved("datashare_ingest_batches_total", **ed, agency="health", outcome="rejected") == 1
    assert moved("datashare_ingest_batches_rejected_total", **ed, reason="signature") == 1
    assert moved("datashare_ingest_records_rejected_total", **ed, reason="signature") == 7
    assert moved("datashare_decisions_total", action="query", outcome="allow") == 1
    assert moved("datashare_decisions_total", action="query", outcome="deny") == 2
    assert moved("datashare_budget_refusals_total", agreement="ag-2026-001", budget="query") == 1
    assert moved("datashare_query_latency_seconds_count", code="OK") == 1
    assert moved("datashare_query_latency_seconds_count", code="PERMISSION_DENIED") == 2
    # 20 districts: D03 and the 17 empty ones under k (primary); D01 withheld with them so that
    # the total cannot give D03 back (secondary); D02 released
    assert (withheld_in_answer, len(answer.cells)) == (19, 20)
    assert moved("datashare_cells_withheld_total") == 19  # 18 small, 1 to protect them: not said which
    assert moved("datashare_cells_released_total") == 1
    # one decision per query; one per batch, except the resend's (stored before, decided again)
    assert moved("datashare_policy_latency_seconds_count") >= 3 + 4
    assert moved("datashare_audit_write_latency_seconds_count") >= 3 + 4
    assert moved("datashare_audit_write_failures_total") == 0


def test_metric_labels_carry_no_identity_and_no_caller_text(budgeted: Running) -> None:
    """A batch naming a dataset the catalogue lacks and a query for an unknown agreement leave no caller-chosen word, principal id or pseudonym in any label."""
    agent = budgeted.ingest("agent:health")
    stray = seal(budgeted.layout, "health", "ed_visits", ed_rows("D01", 12))
    with pytest.raises(grpc.RpcError):
        agent.PushBatch(seal(budgeted.layout, "health", "made-up-dataset-xyzzy", ed_rows("D01", 12)))
    agent.PushBatch(stray)
    with pytest.raises(grpc.RpcError):
        budgeted.query("health-analyst").Aggregate(subjects_query(agreement_id="ag-made-up-plugh"))
    text, samples = scrape(budgeted.gateway.metrics_port)
    for word in ("xyzzy", "plugh", "spiffe://", "health-analyst", "D01-"):
        assert word not in text
    labels = {v for (_, pairs) in samples for _, v in pairs}
    assert not [v for v in labels if len(v) >= 32 and all(c in "0123456789abcdef" for c in v)]
    assert (
        value(samples, "datashare_ingest_batches_total", dataset="?", agency="health", outcome="denied") == 1
    )
