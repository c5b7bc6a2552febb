"""`agent preview`: what would leave, decoded from the real batch, with nothing sent or written.

Each test runs the real command line (agents.cli.main) against a real mutual-TLS Ingest server
from agent_testkit, or against none at all for the offline and unreachable cases.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from agent_testkit import (
    ED_HEADER,
    AgencyKeys,
    RecordingIngest,
    RunningServer,
    Workspace,
    ed_row,
    make_contract,
    start_server,
    write_csv,
)
from agent_testkit import (
    TestPki as Pki,
)

from agents import cli, load_config, push
from agents._contract import save_contract
from agents._dates import EPOCH

RAW_IDS = ("AB123456C", "CD654321E", "EF111222G")


def _rows() -> list[dict[str, str]]:
    return [
        ed_row(),  # line 2
        ed_row(  # line 3
            attendance_id="A2",
            patient_national_id=RAW_IDS[1],
            patient_name="Ottoline Quaritch",
            date_of_birth="1950-01-01",
            sex="M",
            home_postcode="ZX2 2BB",
            arrival_time="2024-03-20 23:00",
            departure_time="2024-03-30 23:00",  # 240 hours: clamped to the contract's 72
            triage_code="T02",
            clinical_notes="fell from a ladder at home",
        ),
        ed_row(attendance_id="A3", patient_national_id=RAW_IDS[2], home_postcode="QQ9 9QQ"),  # line 4
    ]


def _preview(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["preview", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _preview_json(capsys: pytest.CaptureFixture[str], workspace: Workspace, *args: str) -> dict[str, Any]:
    code, out, err = _preview(capsys, "--config", str(workspace.config), "--json", *args)
    assert code == 0, err
    result: dict[str, Any] = json.loads(out)
    return result


def _leaves(preview: dict[str, Any]) -> dict[str, str]:
    return {c["column"]: c["summary"] for c in preview["columns"]}


def _cache_contract(workspace: Workspace, granularity: str = "day") -> None:
    workspace.state.mkdir(mode=0o700, exist_ok=True)
    save_contract(workspace.state, make_contract(granularity))


@pytest.fixture
def month_server(pki: Pki, agency_keys: AgencyKeys, workspace: Workspace) -> Iterator[RunningServer]:
    """A real Ingest server whose contract coarsens event dates to the month."""
    running = start_server(pki, RecordingIngest(make_contract("month"), agency_keys))
    workspace.address = running.address
    workspace.write_config()
    try:
        yield running
    finally:
        running.server.stop(grace=None)


def test_identifier_and_free_text_columns_do_not_leave(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every header column is listed; unmapped ones (name, notes, attendance id) say 'does not leave'."""
    workspace.write_rows(_rows())

    leaves = _leaves(_preview_json(capsys, workspace))

    assert list(leaves) == [
        "attendance_id",
        "patient_national_id",
        "patient_name",
        "date_of_birth",
        "sex",
        "home_postcode",
        "arrival_time",
        "departure_time",
        "triage_code",
        "clinical_notes",
    ]
    for column in ("attendance_id", "patient_name", "clinical_notes"):
        assert leaves[column] == "does not leave"
    assert leaves["patient_national_id"] == "leaves as subject via pseudonymise"
    assert leaves["arrival_time"] == (
        "leaves as event_date via date, and as length_of_stay_hours via hours_between"
    )
    assert leaves["home_postcode"] == "leaves as district via lookup"


def test_text_table_says_what_does_not_leave(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table output pairs each unmapped column with 'does not leave' on its row."""
    workspace.write_rows(_rows())

    code, out, err = _preview(capsys, "--config", str(workspace.config))

    assert code == 0, err
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") == 3}
    for column in ("attendance_id", "patient_name", "clinical_notes"):
        assert "does not leave" in rows[column]
    assert "leaves as subject via pseudonymise" in rows["patient_national_id"]
    assert "from the gateway" in out


def test_no_identifier_or_pseudonym_appears_in_any_output(
    server: RunningServer,
    workspace: Workspace,
    agency_keys: AgencyKeys,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Neither the tables nor the JSON hold a raw identifier, a name, a note, or a token (hex,
    base64 or an 8-hex-digit prefix); subjects show as a size placeholder."""
    workspace.write_rows(_rows())
    tokens = [hmac.new(agency_keys.linkage_key, raw.encode(), hashlib.sha256).digest() for raw in RAW_IDS]

    code, text, err = _preview(capsys, "--config", str(workspace.config))
    assert code == 0, err
    as_json = json.dumps(_preview_json(capsys, workspace))

    assert "pseudonym (32 bytes)" in text
    assert "pseudonym (32 bytes)" in as_json
    for output in (text + err, as_json):
        for secret in (*RAW_IDS, "Wilhelmina", "Ottoline", "ladder", "confidential"):
            assert secret not in output
        for token in tokens:
            assert token.hex()[:8] not in output.lower()
            assert base64.b64encode(token).decode()[:12] not in output


def test_records_are_decoded_coarsened_and_clamped(
    month_server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Records show the values of the batch that would be sealed: event date to the month, age band
    from the date of birth, looked-up and mapped categories, hours clamped to the contract."""
    workspace.write_rows(_rows())

    preview = _preview_json(capsys, workspace)

    assert preview["contract"] == {
        "dataset": "ed_visits",
        "version": 3,
        "granularity": "month",
        "from": "gateway",
    }
    assert preview["plaintext_bytes"] > 0
    assert preview["records"] == [
        {
            "line": 2,
            "values": {
                "subject": "pseudonym (32 bytes)",
                "event_date": "2024-03-01",
                "district": "D01",
                "age_band": "25-34",
                "sex": "F",
                "presentation": "overdose",
                "length_of_stay_hours": 4.5,
            },
        },
        {
            "line": 3,
            "values": {
                "subject": "pseudonym (32 bytes)",
                "event_date": "2024-03-01",
                "district": "D02",
                "age_band": "65+",
                "sex": "M",
                "presentation": "injury",
                "length_of_stay_hours": 72.0,
            },
        },
    ]
    assert month_server.servicer.push_calls == 0


def test_output_fields_show_transform_columns_and_contract_limits(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each field that leaves lists its transform, source columns and the contract's domain or clamp."""
    workspace.write_rows(_rows())

    fields = {f["field"]: f for f in _preview_json(capsys, workspace)["fields"]}

    assert list(fields) == [
        "subject",
        "event_date",
        "district",
        "age_band",
        "sex",
        "presentation",
        "length_of_stay_hours",
    ]
    assert fields["subject"]["columns"] == ["patient_national_id"]
    assert fields["district"]["transform"] == "lookup"
    assert fields["district"]["domain"] == ["D01", "D02", "D03"]
    assert fields["length_of_stay_hours"]["columns"] == ["arrival_time", "departure_time"]
    assert (fields["length_of_stay_hours"]["min"], fields["length_of_stay_hours"]["max"]) == (0, 72)


def test_malformed_and_out_of_domain_rows_are_listed_as_rejected(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A row with too few fields and a row whose postcode has no lookup entry are rejected with their
    line, field and reason; the good rows are still previewed."""
    workspace.write_rows(_rows())
    with workspace.data.open("a", encoding="utf-8") as handle:
        handle.write("A9,ZZ999999Z,Truncated Row\n")  # line 5

    preview = _preview_json(capsys, workspace)

    assert preview["rejected"] == [
        {"line": 4, "field": "district", "reason": "no entry in the lookup file"},
        {"line": 5, "field": "row", "reason": "wrong number of fields"},
    ]
    assert [r["line"] for r in preview["records"]] == [2, 3]
    assert "ZZ999999Z" not in json.dumps(preview)


def test_reads_only_the_first_n_rows(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """--rows 2 reads two rows: the malformed rows after them are never reached."""
    workspace.write_rows(_rows()[:2])
    with workspace.data.open("a", encoding="utf-8") as handle:
        handle.writelines("broken,row\n" for _ in range(50))

    preview = _preview_json(capsys, workspace, "--rows", "2")

    assert preview["rows_read"] == 2
    assert [r["line"] for r in preview["records"]] == [2, 3]
    assert preview["rejected"] == []


def test_nothing_is_sent_or_written(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only GetContract reaches the gateway; the reject file and the rest of state_dir are untouched."""
    workspace.write_rows(_rows())
    _cache_contract(workspace, granularity="month")  # an older cached contract must stay as it was
    reject_file = workspace.state / "rejects.csv"
    reject_file.write_text("line,field,reason\n7,sex,value not listed in the map\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in workspace.state.iterdir()}

    preview = _preview_json(capsys, workspace)

    assert preview["rejected"]  # line 4 would be rejected, yet the reject file is not written
    assert {p.name: p.read_bytes() for p in workspace.state.iterdir()} == before
    assert server.servicer.push_calls == 0


def test_offline_uses_the_cached_contract_without_a_gateway(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """--offline previews from the contract cached in state_dir with no gateway running, silently."""
    workspace.write_rows(_rows())
    _cache_contract(workspace, granularity="month")

    code, out, err = _preview(capsys, "--config", str(workspace.config), "--offline", "--json")

    assert code == 0, err
    assert err == ""
    preview = json.loads(out)
    assert preview["contract"]["from"] == "cache"
    assert preview["records"][0]["values"]["event_date"] == "2024-03-01"


def test_unreachable_gateway_falls_back_to_the_cache_and_says_so(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no gateway listening, the cached contract is used and stderr says the gateway is unreachable."""
    workspace.write_rows(_rows())
    _cache_contract(workspace)

    code, out, err = _preview(capsys, "--config", str(workspace.config), "--json")

    assert code == 0, err
    assert err.startswith("agent: gateway unreachable")
    assert err.count("\n") == 1
    assert json.loads(out)["contract"]["from"] == "cache"


def test_unreachable_gateway_without_a_cache_exits_5(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """No gateway and no cached contract: one line naming the missing cache, exit 5, nothing on stdout."""
    workspace.write_rows(_rows())

    code, out, err = _preview(capsys, "--config", str(workspace.config))

    assert code == 5
    assert out == ""
    assert err.count("\n") == 1
    assert "no cached contract" in err


def test_offline_without_a_cache_exits_2(workspace: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    """--offline with no cached contract is a config error naming the cache file."""
    workspace.write_rows(_rows())

    code, _out, err = _preview(capsys, "--config", str(workspace.config), "--offline")

    assert code == 2
    assert str(workspace.state / "contract-ed_visits.json") in err


def test_missing_mapped_column_exits_2_naming_it(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A source without a column the mapping reads is a config error naming that column."""
    _cache_contract(workspace)
    workspace.data.write_text("attendance_id,patient_name\nA1,Someone\n", encoding="utf-8")

    code, _out, err = _preview(capsys, "--config", str(workspace.config), "--offline")

    assert code == 2
    assert "column 'patient_national_id' is missing" in err


def test_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent preview --help` exits 0 and explains every option, each with an example."""
    assert cli.main(["preview", "--help"]) == 0
    out = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = [a for a in sub.choices["preview"]._actions if a.option_strings and a.dest != "help"]
    assert {opt for a in actions for opt in a.option_strings} == {"--config", "--rows", "--json", "--offline"}
    for action in actions:
        assert action.option_strings[0] in out
        assert action.help is not None
        assert "example" in action.help
    assert "does not leave" in out


@pytest.mark.parametrize("rows", ["0", "-3", "ten", "100000"])
def test_rows_out_of_range_is_a_usage_error(
    rows: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """--rows must be a whole number from 1 to 1000: anything else exits 2 naming the option."""
    code, _out, err = _preview(capsys, "--config", str(tmp_path / "agent.toml"), "--rows", rows)

    assert code == 2
    assert "--rows" in err


def test_column_names_are_shown_literally(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A header name that looks like rich markup is printed as written, not interpreted."""
    header = [*ED_HEADER, "[bold]free text[/bold]"]
    write_csv(workspace.data, [{**row, header[-1]: "private words"} for row in _rows()], header=header)

    code, out, err = _preview(capsys, "--config", str(workspace.config))

    assert code == 0, err
    assert "[bold]free text[/bold]" in out
    assert "private words" not in out


def test_preview_matches_what_push_then_delivers(
    server: RunningServer, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """The previewed records are, value for value, what `agent push` then seals and the gateway opens."""
    workspace.write_rows(_rows())
    preview = _preview_json(capsys, workspace)

    push(load_config(workspace.config))

    delivered = [
        {"event_date": (EPOCH + timedelta(days=day)).isoformat(), **dims, **measures}
        for _token, day, dims, measures in server.servicer.all_records()
    ]
    shown = [{k: v for k, v in r["values"].items() if k != "subject"} for r in preview["records"]]
    assert shown == delivered
    assert len(delivered) == 2


def test_gateway_refusal_is_not_hidden_by_the_cache(
    pki: Pki, agency_keys: AgencyKeys, workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    """A gateway that refuses GetContract (no such dataset) ends the preview with exit 4 and its
    reason, even when a cached contract exists: only an unreachable gateway falls back."""
    other = make_contract()
    other.dataset = "other_dataset"
    running = start_server(pki, RecordingIngest(other, agency_keys))
    try:
        workspace.address = running.address
        workspace.write_config()
        workspace.write_rows(_rows())
        _cache_contract(workspace)

        code, out, err = _preview(capsys, "--config", str(workspace.config))
    finally:
        running.server.stop(grace=None)

    assert code == 4
    assert out == ""
    assert "NOT_FOUND" in err
    assert err.count("\n") == 1
