"""`agent check`: real certificates from a throwaway CA, real key files, a real mTLS gateway stub."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import agent_testkit as kit
import grpc
import pytest
from agent_testkit import (
    AGENT_SPIFFE,
    AgencyKeys,
    RecordingIngest,
    RunningServer,
    Workspace,
    ed_row,
    make_contract,
    start_server,
    write_csv,
    write_secret,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents import cli
from agents._check import CHECK_NAMES
from agents._contract import cache_path, save_contract
from agents._pb import common_pb2, ingest_pb2
from agents._state import AgentState

# --- a CA that keeps its key, so a test can issue the agent a certificate of its own --------


@dataclass(frozen=True)
class LocalCa:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls) -> LocalCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "check test CA")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        sans: list[x509.GeneralName],
        *,
        not_before: timedelta = timedelta(days=-1),
        not_after: timedelta = timedelta(days=365),
        server: bool = False,
    ) -> x509.Certificate:
        """A leaf certificate valid from now+not_before to now+not_after."""
        now = datetime.now(UTC)
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + not_before)
            .not_valid_after(now + not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .sign(self.key, hashes.SHA256())
        )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture(scope="module")
def local_ca() -> LocalCa:
    return LocalCa.create()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, local_ca: LocalCa) -> kit.TestPki:
    """Year-long certificates (the testkit's last one day, which `check` rightly warns about)."""
    root = tmp_path_factory.mktemp("check-pki")
    server_key, agent_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    server = local_ca.issue(server_key, [x509.DNSName("localhost")], server=True)
    agent = local_ca.issue(agent_key, [x509.UniformResourceIdentifier(AGENT_SPIFFE)])
    files = kit.TestPki(
        root / "ca.pem", root / "server.pem", root / "server.key", root / "agent.pem", root / "agent.key"
    )
    files.ca.write_bytes(_pem(local_ca.cert))
    files.server_cert.write_bytes(_pem(server))
    write_secret(files.server_key, _key_pem(server_key))
    files.agent_cert.write_bytes(_pem(agent))
    write_secret(files.agent_key, _key_pem(agent_key))
    return files


def give_agent_certificate(workspace: Workspace, ca: LocalCa, **issue: Any) -> Path:
    """Issue the workspace's agent a new certificate (and key) and point its config at them."""
    key = ec.generate_private_key(ec.SECP256R1())
    sans = issue.pop("sans", [x509.UniformResourceIdentifier(AGENT_SPIFFE)])
    cert_path, key_path = workspace.root / "tls" / "agent.pem", workspace.root / "tls" / "agent.key"
    write_secret(key_path, _key_pem(key))
    cert_path.write_bytes(_pem(ca.issue(key, sans, **issue)))
    workspace.pki = replace(workspace.pki, agent_cert=cert_path, agent_key=key_path)
    workspace.write_config()
    return cert_path


# --- running the command ---------------------------------------------------------------------


def run_check(
    config: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any], dict[str, dict[str, str]]]:
    """(exit code, the JSON document, its checks by name)."""
    code = cli.main(["check", "--config", str(config), "--json", *extra])
    captured = capsys.readouterr()
    assert captured.err == ""
    doc = json.loads(captured.out)
    return code, doc, {check["name"]: check for check in doc["checks"]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def ready(workspace: Workspace, server: RunningServer) -> Workspace:
    """A workspace with a source file, pointing at a live gateway."""
    workspace.write_rows([ed_row()])
    return workspace


def statuses(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


# --- tests -----------------------------------------------------------------------------------


def test_everything_ok_against_a_live_gateway(ready: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A complete, correct setup with the gateway up: every check ok, exit 0, contract version shown."""
    code, doc, checks = run_check(ready.config, capsys)

    assert code == 0
    assert doc["ok"] is True
    assert [check["name"] for check in doc["checks"]] == list(CHECK_NAMES)
    assert set(statuses(checks).values()) == {"ok"}, checks
    assert "version 3" in checks["gateway"]["detail"]
    assert "ed-agent-1" in checks["certificate_identity"]["detail"]


def test_check_writes_nothing(
    ready: Workspace, server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """A check creates no state directory (so caches no contract) and pushes no batch."""
    code, _doc, _checks = run_check(ready.config, capsys)

    assert code == 0
    assert not ready.state.exists()
    assert server.servicer.push_calls == 0


def test_json_has_the_documented_shape(ready: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one object {"ok", "checks": [{"name", "status", "detail"}]} and nothing else."""
    (ready.root / "keys" / "linkage.key").chmod(0o644)
    cli.main(["check", "--config", str(ready.config), "--json"])
    out = capsys.readouterr().out

    assert out.count("\n") == 1
    doc = json.loads(out)
    assert set(doc) == {"ok", "checks"}
    assert doc["ok"] is False
    for check in doc["checks"]:
        assert set(check) == {"name", "status", "detail"}
        assert check["status"] in {"ok", "warn", "fail"}
        assert isinstance(check["detail"], str)
        assert check["detail"]
        assert "\n" not in check["detail"]


def test_table_lists_every_check_and_a_summary(ready: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json a table names every check with its status, then one summary line."""
    code = cli.main(["check", "--config", str(ready.config)])
    out = capsys.readouterr().out

    assert code == 0
    for name in CHECK_NAMES:
        assert name in out
    assert f"all {len(CHECK_NAMES)} checks ok" in out


def test_expired_client_certificate_fails_with_its_date(
    ready: Workspace, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate past its end date fails, saying when it expired; exit 2."""
    give_agent_certificate(ready, local_ca, not_before=timedelta(days=-30), not_after=timedelta(days=-2))
    expired = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d")

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["client_certificate"]["status"] == "fail"
    assert f"expired on {expired}" in checks["client_certificate"]["detail"]


def test_not_yet_valid_client_certificate_fails(
    ready: Workspace, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate whose validity starts tomorrow fails, naming the start date."""
    give_agent_certificate(ready, local_ca, not_before=timedelta(days=1), not_after=timedelta(days=90))
    start = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%d")

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["client_certificate"]["status"] == "fail"
    assert f"not valid before {start}" in checks["client_certificate"]["detail"]


def test_certificate_expiring_within_30_days_warns(
    ready: Workspace, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate with 10 days left warns with its end date; warnings alone exit 0."""
    give_agent_certificate(ready, local_ca, not_after=timedelta(days=10, hours=1))
    end = (datetime.now(UTC) + timedelta(days=10, hours=1)).strftime("%Y-%m-%d")

    code, doc, checks = run_check(ready.config, capsys)

    assert code == 0
    assert doc["ok"] is True
    assert checks["client_certificate"]["status"] == "warn"
    assert f"expires on {end} " in checks["client_certificate"]["detail"]
    assert "in 10 day(s)" in checks["client_certificate"]["detail"]
    assert checks["gateway"]["status"] == "ok"


def test_wrong_agency_in_the_certificate_fails_naming_both(
    ready: Workspace, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """A certificate for agency 'police' used with agent.agency 'health' fails, naming both; exit 2."""
    uri = x509.UniformResourceIdentifier("spiffe://test.local/agency/police/agent/ed-agent-1")
    give_agent_certificate(ready, local_ca, sans=[uri])

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    identity = checks["certificate_identity"]
    assert identity["status"] == "fail"
    assert "'police'" in identity["detail"]
    assert "'health'" in identity["detail"]


def test_certificate_for_another_role_fails(
    ready: Workspace, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """An analyst's certificate of the right agency is not an agent certificate."""
    uri = x509.UniformResourceIdentifier("spiffe://test.local/agency/health/analyst/ana")
    give_agent_certificate(ready, local_ca, sans=[uri])

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["certificate_identity"]["status"] == "fail"
    assert "'analyst'" in checks["certificate_identity"]["detail"]


def test_certificate_from_another_ca_fails_the_chain_check(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A client certificate signed by a CA other than the configured one fails certificate_chain."""
    give_agent_certificate(ready, LocalCa.create())

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["certificate_chain"]["status"] == "fail"
    assert checks["client_certificate"]["status"] == "ok"


def test_certificate_not_matching_the_tls_key_fails(
    ready: Workspace, pki: kit.TestPki, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TLS key that is not the certificate's (here the server's key) fails certificate_key."""
    other = ready.root / "tls" / "other.key"
    write_secret(other, pki.server_key.read_bytes())
    ready.pki = replace(ready.pki, agent_key=other)
    ready.write_config()

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["certificate_key"]["status"] == "fail"
    assert checks["tls_key"]["status"] == "ok"


@pytest.mark.parametrize("key", ["linkage_key", "signing_key", "tls_key"])
def test_group_readable_key_file_fails_with_chmod_hint(
    ready: Workspace, capsys: pytest.CaptureFixture[str], key: str
) -> None:
    """A key file with mode 0644 fails its check with the chmod command that fixes it; exit 2."""
    path = {
        "linkage_key": ready.root / "keys" / "linkage.key",
        "signing_key": ready.root / "keys" / "signing.key",
        "tls_key": ready.pki.agent_key,
    }[key]
    copy = ready.root / "tls" / "readable.key"
    copy.parent.mkdir(exist_ok=True)
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o644)
    text = ready.config.read_text(encoding="utf-8")
    setting = {"linkage_key": "linkage_key = ", "signing_key": "signing_key = ", "tls_key": "key = "}[key]
    old = next(line for line in text.splitlines() if line.startswith(setting))
    ready.config.write_text(text.replace(old, f'{setting}"{copy}"'), encoding="utf-8")

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks[key]["status"] == "fail"
    assert f"chmod 600 {copy}" in checks[key]["detail"]
    assert [name for name, status in statuses(checks).items() if status == "fail"] == [key]


def test_key_from_the_environment_is_accepted(
    ready: Workspace,
    agency_keys: AgencyKeys,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A linkage key given by an environment variable loads, and the detail names the variable."""
    text = ready.config.read_text(encoding="utf-8")
    ready.config.write_text(
        text.replace('linkage_key = "keys/linkage.key"', 'linkage_key_env = "CHECK_TEST_LINKAGE"'),
        encoding="utf-8",
    )
    monkeypatch.setenv("CHECK_TEST_LINKAGE", agency_keys.linkage_key.hex())

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 0
    assert checks["linkage_key"]["status"] == "ok"
    assert "environment variable CHECK_TEST_LINKAGE" in checks["linkage_key"]["detail"]


def test_gateway_down_is_unreachable_and_the_cached_contract_is_used(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no gateway listening: gateway fails 'unreachable' (exit 5); the mapping is checked
    against the contract the last push cached, and the detail says so."""
    workspace.write_rows([ed_row()])
    workspace.address = f"127.0.0.1:{closed_port()}"
    workspace.write_config()
    workspace.state.mkdir()
    save_contract(workspace.state, make_contract())

    code, doc, checks = run_check(workspace.config, capsys)

    assert code == 5
    assert doc["ok"] is False
    assert checks["gateway"]["status"] == "fail"
    assert "unreachable" in checks["gateway"]["detail"]
    assert checks["contract"]["status"] == "warn"
    assert "cached" in checks["contract"]["detail"]
    assert "version 3" in checks["contract"]["detail"]


def test_gateway_down_and_no_cached_contract(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no gateway and no cached contract the contract check says it could not check."""
    workspace.write_rows([ed_row()])
    workspace.address = f"127.0.0.1:{closed_port()}"
    workspace.write_config()

    code, _doc, checks = run_check(workspace.config, capsys)

    assert code == 5
    assert checks["contract"]["status"] == "warn"
    assert checks["contract"]["detail"].startswith("not checked")


def test_gateway_that_never_answers_is_unreachable_within_the_timeout(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port that accepts TCP but never speaks TLS: unreachable once --timeout has passed, not later."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        workspace.write_rows([ed_row()])
        workspace.address = f"127.0.0.1:{silent.getsockname()[1]}"
        workspace.write_config()
        started = time.monotonic()
        code, _doc, checks = run_check(workspace.config, capsys, "--timeout", "0.5")
        elapsed = time.monotonic() - started

    assert code == 5
    assert "unreachable: no answer within 0.5 s" in checks["gateway"]["detail"]
    assert 0.4 < elapsed < 3.0


class _RefusingIngest(RecordingIngest):
    def GetContract(  # noqa: N802 - the generated servicer's method name
        self, request: ingest_pb2.GetContractRequest, context: grpc.ServicerContext
    ) -> common_pb2.DatasetContract:
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "agency health may not push ed_visits")


@pytest.fixture
def refusing(pki: kit.TestPki, agency_keys: AgencyKeys, workspace: Workspace) -> Iterator[Workspace]:
    running = start_server(pki, _RefusingIngest(make_contract(), agency_keys))
    workspace.address = running.address
    workspace.write_config()
    workspace.write_rows([ed_row()])
    try:
        yield workspace
    finally:
        running.server.stop(grace=None)


def test_gateway_refusal_names_the_status(refusing: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A gateway answering PERMISSION_DENIED is 'refused (PERMISSION_DENIED: ...)'; exit 4."""
    code, _doc, checks = run_check(refusing.config, capsys)

    assert code == 4
    assert checks["gateway"]["status"] == "fail"
    assert "refused (PERMISSION_DENIED: agency health may not push ed_visits)" in checks["gateway"]["detail"]


def test_contract_version_change_since_last_push_warns(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The gateway's contract is version 3, the last push cached version 2: warn, naming both."""
    older = make_contract()
    older.version = 2
    ready.state.mkdir()
    save_contract(ready.state, older)

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 0
    contract = checks["contract"]
    assert contract["status"] == "warn"
    assert "version 3" in contract["detail"]
    assert "last push used version 2" in contract["detail"]
    assert json.loads(cache_path(ready.state, "ed_visits").read_text(encoding="utf-8"))["version"] == 2


def test_mapping_that_does_not_fit_the_contract_fails(
    pki: kit.TestPki, agency_keys: AgencyKeys, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A contract with a column the config does not map fails the contract check, naming it; exit 2."""
    contract = make_contract()
    contract.columns.append(
        common_pb2.ContractColumn(name="region", kind=common_pb2.COLUMN_KIND_DIMENSION, domain=["north"])
    )
    running = start_server(pki, RecordingIngest(contract, agency_keys))
    try:
        workspace.address = running.address
        workspace.write_config()
        workspace.write_rows([ed_row()])
        code, _doc, checks = run_check(workspace.config, capsys)
    finally:
        running.server.stop(grace=None)

    assert code == 2
    assert checks["gateway"]["status"] == "ok"
    assert checks["contract"]["status"] == "fail"
    assert "fields.region" in checks["contract"]["detail"]


def test_source_missing_a_mapped_column_fails_naming_it(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source whose header lacks a column the mapping reads fails the source check, naming it."""
    header = [c for c in ed_row() if c != "triage_code"]
    write_csv(ready.data, [ed_row()], header=header)

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 2
    assert checks["source"]["status"] == "fail"
    assert "'triage_code'" in checks["source"]["detail"]


def test_missing_source_file_is_a_source_error(ready: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """A source file that does not exist fails the source check with exit 3."""
    ready.data.unlink()

    code, _doc, checks = run_check(ready.config, capsys)

    assert code == 3
    assert checks["source"]["status"] == "fail"


def test_exit_code_is_the_lowest_among_failures(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key failure (2) and an unreachable gateway (5) together exit 2: the one to fix first."""
    workspace.write_rows([ed_row()])
    workspace.address = f"127.0.0.1:{closed_port()}"
    workspace.write_config()
    (workspace.root / "keys" / "signing.key").chmod(0o640)

    code, _doc, checks = run_check(workspace.config, capsys)

    assert code == 2
    assert checks["signing_key"]["status"] == "fail"
    assert checks["gateway"]["status"] == "fail"


def test_config_that_does_not_load_is_the_single_failure(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A config with an unknown key is one failed 'config' check carrying the loader's message; exit 2."""
    workspace.write_config(extra='\n[extra]\nsurprise = "yes"\n')

    code, doc, _checks = run_check(workspace.config, capsys)

    assert code == 2
    assert doc == {
        "ok": False,
        "checks": [{"name": "config", "status": "fail", "detail": f"{workspace.config}: extra: unknown key"}],
    }


def test_no_key_material_or_identifier_in_any_output(
    ready: Workspace, agency_keys: AgencyKeys, local_ca: LocalCa, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither the table nor the JSON, passing or failing, shows a key, a pseudonym or a record value."""
    row = ed_row()
    ready.write_rows([row, ed_row(patient_national_id="ZZ987654Q", patient_name="Bartholomew Quince")])
    outputs = []
    for breakage in ("none", "key mode", "cert"):
        if breakage == "key mode":
            (ready.root / "keys" / "linkage.key").chmod(0o644)
        if breakage == "cert":
            give_agent_certificate(
                ready, local_ca, not_after=timedelta(days=-1), not_before=timedelta(days=-9)
            )
        for extra in ([], ["--json"]):
            cli.main(["check", "--config", str(ready.config), *extra])
            captured = capsys.readouterr()
            outputs.append(captured.out + captured.err)
    text = "\n".join(outputs)

    def pem_body(pem: bytes) -> list[str]:
        return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]

    signing_raw = agency_keys.signing_private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    secrets = [
        agency_keys.linkage_key.hex(),
        signing_raw.hex(),
        *pem_body(agency_keys.signing_pem()),
        *pem_body(ready.pki.agent_key.read_bytes()),
        hmac.new(agency_keys.linkage_key, b"AB123456C", hashlib.sha256).hexdigest()[:16],
    ]
    values = ["AB123456C", "ZZ987654Q", "Wilhelmina", "Bartholomew", "confidential note", "ZX1 1AA"]
    assert "fail" in text  # the broken setups did report
    for needle in secrets + values:
        assert needle.lower() not in text.lower(), needle


def test_help_explains_every_option_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent check --help` exits 0, explains each option with an example, and lists every check."""
    assert cli.main(["check", "--help"]) == 0
    out = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [opt for action in sub.choices["check"]._actions for opt in action.option_strings]
    assert {"--config", "--json", "--timeout"} <= set(options)
    for option in options:
        assert option in out
    assert out.count("example") >= 4
    for name in CHECK_NAMES:
        assert name in out


def test_timeout_must_be_a_sensible_number(capsys: pytest.CaptureFixture[str]) -> None:
    """--timeout 0 is a usage error (exit 2) naming the option."""
    assert cli.main(["check", "--config", "agent.toml", "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err


# --- the spool ---------------------------------------------------------------------------------


def _spool_one(state_dir: Path, records: int) -> None:
    state_dir.mkdir(exist_ok=True)
    with AgentState(state_dir) as state:
        state.spool("csv:ed", "{}", {"offset": 10}, [], ("batch-1", records, b"sealed"))


def test_batches_waiting_in_the_spool_warn_with_their_count(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A spool holding an unacknowledged batch warns with the batch and record counts (exit 0)."""
    _spool_one(ready.state, 7)
    code, _doc, checks = run_check(ready.config, capsys)
    assert code == 0
    assert checks["spool"]["status"] == "warn"
    assert "1 batch(es), 7 record(s) wait to be sent" in checks["spool"]["detail"]


def test_an_empty_spool_is_ok(ready: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """After every batch was acknowledged the spool check is ok and says it is empty."""
    _spool_one(ready.state, 7)
    with AgentState(ready.state) as state:
        state.acknowledge(state.pending()[0].seq)
    _code, _doc, checks = run_check(ready.config, capsys)
    assert checks["spool"]["status"] == "ok"
    assert "empty" in checks["spool"]["detail"]


def test_a_spool_held_by_a_running_agent_is_reported_not_waited_for(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """While another agent process holds the state, check says so at once and changes nothing."""
    _spool_one(ready.state, 7)
    with AgentState(ready.state) as state:
        state.pending()  # the running agent holds its exclusive lock from here on
        started = time.monotonic()
        _code, _doc, checks = run_check(ready.config, capsys)
        assert time.monotonic() - started < 10
        assert state.spooled_counts() == (1, 7)
    assert checks["spool"]["status"] == "ok"
    assert "in use by a running agent" in checks["spool"]["detail"]


def test_a_damaged_state_file_fails_the_spool_check(
    ready: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A state file that is not SQLite fails the spool check naming the file (exit 2)."""
    ready.state.mkdir()
    (ready.state / "agent-state.sqlite3").write_bytes(b"not a database at all" * 100)
    code, _doc, checks = run_check(ready.config, capsys)
    assert code == 2
    assert checks["spool"]["status"] == "fail"
    assert "agent-state.sqlite3" in checks["spool"]["detail"]
