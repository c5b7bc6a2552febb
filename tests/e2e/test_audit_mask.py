"""The decision log's mask over the wire: the bundle's ``datashare/log/mask`` rule decides what of
each decision is not stored; when it fails, nothing is released and the input is not stored."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import sqlalchemy
import sqlalchemy.pool
from e2e_harness import Running, _Serve, ed_rows, seal, subjects_query

from gateway._pb import audit_pb2
from gateway._settings import GatewaySettings
from gateway.pki import PkiLayout
from gateway.policy._locate import shipped_bundle_dir

ERASE_NAME_MASK_NOW = """package datashare.log

import rego.v1

mask contains "/input/principal/name"

mask contains {"op": "upsert", "path": "/input/now", "value": "masked"}
"""
# an engine error: a complete rule with two values (OPA and regorus both refuse to evaluate it)
CONFLICTING_MASK = """package datashare.log

import rego.v1

mask contains p if p := which

which := "/input/a"

which := "/input/b"
"""
# a value the gateway cannot apply (neither a pointer nor an upsert)
MALFORMED_MASK = """package datashare.log

import rego.v1

mask contains 42
"""


def _serve_with_mask(pki: PkiLayout, tmp_path: Path, mask: str | None) -> _Serve:
    """A gateway on a copy of the shipped bundle, with ``mask`` as its log.rego (None: shipped)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    if mask is not None:
        _set_mask(bundle, mask)
    settings = GatewaySettings.from_file(pki.gateway_config)
    settings = dataclasses.replace(
        settings, policy=dataclasses.replace(settings.policy, bundle=bundle, reload_interval_s=0)
    )
    return _Serve(settings, f"sqlite:///{tmp_path / 'gateway.db'}", pki)


def _set_mask(bundle: Path, mask: str) -> None:
    (bundle / "datashare" / "log.rego").write_text(mask)
    (bundle / "datashare" / "log_test.rego").unlink(missing_ok=True)


@pytest.fixture
def masking(pki: PkiLayout, tmp_path: Path) -> Iterator[Running]:
    with _serve_with_mask(pki, tmp_path, ERASE_NAME_MASK_NOW) as served:
        yield served


def _rows(running: Running, action: str) -> list[dict[str, object]]:
    engine = sqlalchemy.create_engine(running.store_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sqlalchemy.text("SELECT * FROM audit_log WHERE action = :a ORDER BY seq"), {"a": action}
            )
            return [dict(r) for r in rows.mappings()]
    finally:
        engine.dispose()


def test_the_mask_erases_and_replaces_before_storing_and_says_so(masking: Running) -> None:
    """What the mask names is not in the stored input; erased and masked list the pointers; the
    chain still verifies."""
    masking.ingest("agent:health").PushBatch(seal(masking.layout, "health", "ed_visits", ed_rows("D01", 20)))
    masking.query("health-analyst").Aggregate(subjects_query())
    (row,) = _rows(masking, "query")
    stored = json.loads(str(row["input"]))
    assert "name" not in stored["principal"] and stored["principal"]["agency"] == "health"
    assert stored["now"] == "masked"
    assert json.loads(str(row["erased"])) == ["/input/principal/name"]
    assert json.loads(str(row["masked"])) == ["/input/now"]
    listed = list(masking.audit().ListDecisions(audit_pb2.ListDecisionsRequest(outcome="allow")))
    query = next(d for d in listed if d.action == "query")
    assert list(query.erased) == ["/input/principal/name"] and query.schema_version == 2
    assert masking.audit().VerifyLog(audit_pb2.VerifyLogRequest()).ok


@pytest.mark.parametrize("mask", [CONFLICTING_MASK, MALFORMED_MASK], ids=["engine-error", "malformed"])
def test_a_failing_mask_releases_nothing_and_stores_no_input(
    pki: PkiLayout, tmp_path: Path, mask: str
) -> None:
    """After a reload to a failing mask, an allowed query is answered UNAVAILABLE with no figure;
    its entry is an error without input or result (both erased); the failure is counted. A
    refused query stays refused (PERMISSION_DENIED), also stored without its input."""
    with _serve_with_mask(pki, tmp_path, None) as running:
        running.ingest("agent:health").PushBatch(
            seal(running.layout, "health", "ed_visits", ed_rows("D01", 40))
        )
        _set_mask(tmp_path / "bundle", mask)
        assert running.gateway.reload_policy().status == "reloaded"
        with pytest.raises(grpc.RpcError) as err:
            running.query("health-analyst").Aggregate(subjects_query())
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "40" not in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as refused:
            running.query("police-analyst").Aggregate(subjects_query())
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        failures = running.gateway.shared.metrics.audit_mask_failures._value.get()
        rows = _rows(running, "query")
    assert failures >= 2
    assert [r["outcome"] for r in rows] == ["error", "deny"]
    for row in rows:
        assert json.loads(str(row["input"])) == {} and json.loads(str(row["result"])) == {}
        assert json.loads(str(row["erased"])) == ["/input", "/result"]
        assert any("log mask policy failed" in r for r in json.loads(str(row["reasons"])))
