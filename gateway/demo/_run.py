"""``gateway demo``: the whole path once, on real parts, explained as it goes.

PKI ▶ synthetic agency exports ▶ gateway (mTLS, SQLite, embedded Rego) ▶ two agents as separate
processes ▶ an allowed query with withheld cells ▶ a refused query with its reason ▶ audit
verification ▶ clean stop.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import grpc
from rich.console import Console
from rich.rule import Rule

from gateway._pb import audit_pb2, audit_pb2_grpc, query_pb2, query_pb2_grpc
from gateway._settings import ClientProfile, GatewaySettings
from gateway._tls import client_channel
from gateway.cli._client import describe_rpc_error
from gateway.cli._render import print_datasets, print_result
from gateway.demo._agent_configs import write_agent_configs
from gateway.demo._synthetic import generate
from gateway.pki import PkiLayout, init_dev_pki
from gateway.server import build_gateway, configure_logging

AGREEMENT, PURPOSE = "ag-2026-001", "overdose-prevention"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_demo(folder: Path | None, console: Console, *, people: int = 6000, seed: int = 7) -> int:
    root = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="datashare-demo-"))
    address = f"127.0.0.1:{_free_port()}"
    console.print(Rule("1. Development PKI"))
    layout = PkiLayout.at(root)
    if layout.gateway_config.exists():
        console.print(f"Reusing the PKI already in {root}")
    else:
        layout = init_dev_pki(root, listen=address)
        console.print(
            f"Consortium CA, gateway certificate and keys, agent, analyst and auditor certificates in {root}"
        )
    data_dir = root / "data"
    if not (data_dir / "ed_visits.csv").exists():
        files = generate(data_dir, seed=seed, people=people)
        console.print(f"Synthetic exports written: {files}")
    write_agent_configs(root, data_dir, address=address)

    console.print(Rule("2. Gateway"))
    configure_logging("warning", "console")
    settings = dataclasses.replace(GatewaySettings.from_file(layout.gateway_config), listen=address)
    gateway = build_gateway(settings)
    gateway.start()
    console.print(
        f"Gateway listening on {address}: mutual TLS required, SQLite store {settings.store_url}, "
        f"policy revision {gateway.shared.policy.revision}"
    )
    try:
        console.print(Rule("3. Agents push their agencies' records"))
        for agency in ("metro-police", "health"):
            code = _push(root / f"agent-{agency}.toml", console)
            if code != 0:
                console.print(f"[red]the {agency} agent failed (exit {code})[/red]")
                return 1
        _queries(layout, console)
        return _audit(layout, console)
    finally:
        gateway.stop()
        console.print(Rule())
        console.print(f"Gateway stopped. Everything the demo made is in {root}")


def _push(config: Path, console: Console) -> int:
    console.print(f"$ agent push --config {config.name}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(  # noqa: S603 - our own agent, a separate deployable, run as it would be
        [sys.executable, "-m", "agents", "push", "--config", str(config)],
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    for line in (proc.stdout + proc.stderr).strip().splitlines()[-3:]:
        console.print(f"  {line}", markup=False)
    return proc.returncode


def _queries(layout: PkiLayout, console: Console) -> None:
    health = ClientProfile.from_file(layout.client_profile("health-analyst"))
    police = ClientProfile.from_file(layout.client_profile("police-analyst"))
    console.print(Rule("4. What may the health analyst ask?"))
    with client_channel(health) as channel:
        stub = query_pb2_grpc.QueryStub(channel)
        print_datasets(console, stub.ListDatasets(query_pb2.ListDatasetsRequest()).datasets)

        console.print(Rule("5. Allowed: people seen in the ED for an overdose, by district and year"))
        request = query_pb2.AggregateRequest(
            agreement_id=AGREEMENT,
            purpose=PURPOSE,
            dataset="ed_visits",
            measures=[
                query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS),
                query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_RECORDS),
            ],
            group_by=["district", "year"],
            filters=[query_pb2.ValueFilter(dimension="presentation", values=["overdose"])],
            months=query_pb2.MonthRange(first="2024-01", last="2025-12"),
        )
        print_result(console, stub.Aggregate(request))
        console.print(
            "Cells with fewer than k distinct people are withheld, and enough others with them that no "
            "withheld cell can be worked out from the total."
        )

        console.print(Rule("6. Allowed: ... who also had a police contact in the 30 days before"))
        linked = query_pb2.AggregateRequest()
        linked.CopyFrom(request)
        linked.group_by[:] = ["year"]
        linked.link.CopyFrom(query_pb2.Link(dataset="police_incidents", days_before=30))
        try:
            print_result(console, stub.Aggregate(linked))
        except grpc.RpcError as exc:
            console.print(describe_rpc_error(exc)[1], markup=False)

        console.print(Rule("7. Refused: grouping by a dimension the agreement does not allow"))
        bad = query_pb2.AggregateRequest()
        bad.CopyFrom(request)
        bad.group_by[:] = ["presentation"]
        _expect_refusal(console, lambda: stub.Aggregate(bad))
    console.print(Rule("8. Refused: the police analyst has no agreement to read ED data"))
    with client_channel(police) as channel:
        _expect_refusal(console, lambda: query_pb2_grpc.QueryStub(channel).Aggregate(request))


def _expect_refusal(console: Console, call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        console.print(describe_rpc_error(exc)[1], markup=False)
    else:
        raise RuntimeError("the demo expected this query to be refused")


def _audit(layout: PkiLayout, console: Console) -> int:
    console.print(Rule("9. The auditor verifies the decision log"))
    with client_channel(ClientProfile.from_file(layout.client_profile("auditor"))) as channel:
        stub = audit_pb2_grpc.AuditStub(channel)
        report = stub.VerifyLog(audit_pb2.VerifyLogRequest())
        decisions = list(stub.ListDecisions(audit_pb2.ListDecisionsRequest()))
    allowed = sum(d.outcome == "allow" for d in decisions)
    console.print(
        f"{len(decisions)} decisions logged ({allowed} allowed, {len(decisions) - allowed} refused), "
        f"every one hash-chained to the one before."
    )
    if report.ok:
        console.print(
            f"Chain verified: all {report.entries_checked} entries intact, head {report.head_hash[:16]}…"
        )
        return 0
    console.print(f"[red]Chain broken at entry {report.first_bad_seq}: {report.problem}[/red]")
    return 1
