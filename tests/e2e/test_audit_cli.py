"""The auditor's command line over a real gateway: signed head and checkpoints kept off-site, the
public key, CSV export, offline verification of an exported file, and export-then-prune."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from e2e_harness import Running, ed_rows, seal, subjects_query

from gateway.cli import main


def _profile(running: Running, tmp_path: Path, name: str = "auditor") -> str:
    text = running.layout.client_profile(name).read_text()
    text = re.sub(r'(?m)^address = ".*"$', f'address = "{running.address}"', text)
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return str(path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _activity(running: Running) -> None:
    running.ingest("agent:health").PushBatch(seal(running.layout, "health", "ed_visits", ed_rows("D01", 20)))
    for _ in range(3):
        running.query("health-analyst").Aggregate(subjects_query(group_by=["district"]))


def _kept(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, Path, Path]:
    """What an auditor keeps off-site: the export, the checkpoints, a signed head, the public key."""
    auditor = _profile(running, tmp_path)
    files = {}
    for name, argv in {
        "head.json": ("audit", "head", "--client", auditor, "--json"),
        "checkpoints.json": ("audit", "checkpoints", "--client", auditor, "--json"),
        "audit.pub": ("audit", "pubkey", "--client", auditor),
        "log.jsonl": ("audit", "export", "--client", auditor),
    }.items():
        code, out, _ = _run(capsys, *argv)
        assert code == 0
        files[name] = tmp_path / name
        files[name].write_text(out)
    return files["log.jsonl"], files["checkpoints.json"], files["head.json"], files["audit.pub"]


def test_an_export_verifies_offline_against_the_kept_head_and_public_key(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exported file, the signed head taken before it and the public key verify with no gateway."""
    _activity(running)
    log, checkpoints, head, pub = _kept(running, tmp_path, capsys)
    assert pub.read_text() == running.layout.audit_signing_pub.read_text()
    assert json.loads(head.read_text())["kind"] == "head"
    code, out, _ = _run(
        capsys,
        *("audit", "verify", "--file", str(log), "--checkpoints", str(checkpoints)),
        *("--checkpoints", str(head), "--pubkey", str(pub), "--json"),
    )
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["checkpoints_checked"] >= 1
    assert report["head_seq"] == len(log.read_text().splitlines())


def test_an_edited_export_fails_offline_naming_entry_decision_and_column(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Turning a refusal into an allow in the exported file: exit 6, naming seq, decision and column."""
    _activity(running)
    log, _, head, pub = _kept(running, tmp_path, capsys)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    victim = next(d for d in lines if d["action"] == "query")
    victim["cells_released"] += 1
    log.write_text("".join(json.dumps(d) + "\n" for d in lines))
    code, out, _ = _run(
        capsys, "audit", "verify", "--file", str(log), "--checkpoints", str(head), "--pubkey", str(pub)
    )
    flat = " ".join(out.split())
    assert code == 6
    assert f"at entry {victim['seq']} (decision {victim['decision_id']})" in flat
    assert "edited: cells_released" in flat


def test_a_forged_head_fails_offline(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kept head whose hash was altered no longer verifies under the gateway's public key."""
    _activity(running)
    log, _, head, pub = _kept(running, tmp_path, capsys)
    doc = json.loads(head.read_text())
    doc["head_hash"] = "0" * 64
    head.write_text(json.dumps(doc))
    code, out, _ = _run(
        capsys, "audit", "verify", "--file", str(log), "--checkpoints", str(head), "--pubkey", str(pub)
    )
    assert code == 6 and "signature does not verify" in out


def test_verify_over_grpc_with_a_kept_head_catches_a_removed_newest_entry(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The newest entries deleted in the database: the chain alone still holds, the kept signed
    head shows the loss."""
    _activity(running)
    auditor = _profile(running, tmp_path)
    _, out, _ = _run(capsys, "audit", "head", "--client", auditor, "--json")
    head = tmp_path / "head.json"
    head.write_text(out)
    seq = json.loads(out)["seq"]
    running.sql(f"DELETE FROM audit_log WHERE seq >= {seq - 1}")
    code, out, _ = _run(capsys, "audit", "verify", "--client", auditor, "--checkpoints", str(head), "--json")
    report = json.loads(out)
    assert code == 6 and not report["ok"]
    assert report["first_bad_seq"] in (seq - 1, seq)


def test_csv_export_is_a_header_and_one_row_per_filtered_decision(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format csv with --agreement: a header naming the columns, then only that agreement's rows."""
    _activity(running)
    auditor = _profile(running, tmp_path)
    code, out, _ = _run(
        capsys, "audit", "export", "--client", auditor, "--format", "csv", "--agreement", "ag-2026-001"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == 0 and len(rows) == 3
    assert {r["agreement_id"] for r in rows} == {"ag-2026-001"}
    assert {r["action"] for r in rows} == {"query"}
    assert all(json.loads(r["input"])["request"]["dataset"] == "ed_visits" for r in rows)


def test_prune_exports_deletes_and_anchors_and_verify_continues_from_the_anchor(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """prune --before 4: entries 1..3 go to the file (which verifies offline), leave the database,
    and verify --from-anchor holds; the file is never overwritten by a second prune."""
    _activity(running)
    monkeypatch.setenv("DATASHARE_GATEWAY_STORE_URL", running.store_url)
    export = tmp_path / "pruned.jsonl"
    config = str(running.layout.gateway_config)
    code, out, _ = _run(
        capsys, "audit", "prune", "--config", config, "--before", "4", "--export", str(export)
    )
    assert code == 0, out
    assert [json.loads(line)["seq"] for line in export.read_text().splitlines()] == [1, 2, 3]
    auditor = _profile(running, tmp_path)
    code, out, _ = _run(capsys, "audit", "verify", "--client", auditor, "--from-anchor", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["anchor_seq"] == 3
    code, out, _ = _run(capsys, "audit", "verify", "--client", auditor, "--json")
    assert code == 6 and "pruned up to entry 3" in json.loads(out)["problem"]
    code, _, err = _run(
        capsys, "audit", "prune", "--config", config, "--before", "6", "--export", str(export)
    )
    assert code == 2 and "never overwritten" in err
    pub = tmp_path / "audit.pub"
    pub.write_text(running.layout.audit_signing_pub.read_text())
    code, _, _ = _run(capsys, "audit", "verify", "--file", str(export), "--pubkey", str(pub))
    assert code == 0


def test_prune_refuses_the_newest_entry(
    running: Running, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pruning up to the head is refused (exit 4), no file is left, nothing is deleted."""
    _activity(running)
    monkeypatch.setenv("DATASHARE_GATEWAY_STORE_URL", running.store_url)
    export = tmp_path / "pruned.jsonl"
    config = str(running.layout.gateway_config)
    code, out, _ = _run(
        capsys, "audit", "prune", "--config", config, "--before", "999", "--export", str(export)
    )
    assert code == 4 and "newest entry" in " ".join(out.split())
    assert not export.exists()
    auditor = _profile(running, tmp_path)
    code, out, _ = _run(capsys, "audit", "verify", "--client", auditor, "--json")
    assert code == 0 and json.loads(out)["ok"]
