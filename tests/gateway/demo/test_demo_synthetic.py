"""The synthetic agency exports: deterministic, linkable, with planted rare cells and dirty rows."""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agents import normalise_identifier
from gateway.demo import DIRTY_ROWS, PLANTED_CELLS, SyntheticFiles, generate
from gateway.errors import ConfigError


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.csv"))
    }


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _lookup(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        return {key.strip().upper(): value for key, value in reader}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    """Two runs with one seed write byte-identical files; another seed writes different ones."""
    generate(tmp_path / "a", seed=11, people=300)
    generate(tmp_path / "b", seed=11, people=300)
    generate(tmp_path / "c", seed=12, people=300)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a")["ed_visits.csv"] != _digest(tmp_path / "c")["ed_visits.csv"]
    assert len(_digest(tmp_path / "a")) == 5


def test_sizes_suit_the_demo(synthetic: SyntheticFiles) -> None:
    """About three rows per person per file, counted as written."""
    police, ed = _rows(synthetic.police_incidents), _rows(synthetic.ed_visits)
    assert (len(police), len(ed)) == (synthetic.police_rows, synthetic.ed_rows)
    for count in (len(police), len(ed)):
        assert 2 * synthetic.people <= count <= 4 * synthetic.people


def test_the_same_people_appear_in_both_files_formatted_differently(synthetic: SyntheticFiles) -> None:
    """Overlapping national ids exist, and only match once normalised."""
    police_raw = {row["national_id"] for row in _rows(synthetic.police_incidents)}
    ed_raw = {row["patient_national_id"] for row in _rows(synthetic.ed_visits)}
    police = {normalise_identifier(raw) for raw in police_raw} - {""}
    ed = {normalise_identifier(raw) for raw in ed_raw} - {""}
    both = police & ed
    assert len(both) == synthetic.people_in_both
    assert len(both) > synthetic.people // 5
    raw_matches = police_raw & ed_raw
    assert len(raw_matches) < len(both) // 2  # most links need normalisation
    assert any(" " in raw for raw in police_raw)
    assert any("-" in raw for raw in ed_raw)


def test_columns_that_must_not_leave_are_present(synthetic: SyntheticFiles) -> None:
    """The raw exports carry names and free-text notes the agent must drop."""
    police, ed = _rows(synthetic.police_incidents)[0], _rows(synthetic.ed_visits)[0]
    for row, columns in (
        (police, ("person_name", "officer_notes")),
        (ed, ("patient_name", "clinical_notes")),
    ):
        for column in columns:
            assert row[column].strip()
    assert police["person_name"].split()[0] in police["officer_notes"]


def test_districts_are_unequal_and_hotspots_have_more_overdoses(synthetic: SyntheticFiles) -> None:
    """D01 is far larger than D20, and overdoses concentrate in the hotspot districts."""
    districts = _lookup(synthetic.postcode_district)
    triage = _lookup(synthetic.triage_presentation)
    visits: dict[str, int] = defaultdict(int)
    overdoses: dict[str, int] = defaultdict(int)
    for row in _rows(synthetic.ed_visits):
        district = districts.get(row["home_postcode"].strip().upper())
        if district is None:
            continue
        visits[district] += 1
        overdoses[district] += triage[row["triage_code"].strip().upper()] == "overdose"
    assert len(visits) == 20
    assert visits["D01"] > 4 * visits["D20"]
    hot = sum(overdoses[d] for d in ("D03", "D07", "D12")) / sum(visits[d] for d in ("D03", "D07", "D12"))
    cold = sum(overdoses[d] for d in visits if d not in ("D03", "D07", "D12")) / sum(
        visits[d] for d in visits if d not in ("D03", "D07", "D12")
    )
    assert hot > 2 * cold


def test_some_overdoses_follow_a_police_contact(synthetic: SyntheticFiles) -> None:
    """For a share of overdose visits the same person had a police contact 1-30 days before."""
    triage = _lookup(synthetic.triage_presentation)
    contacts: dict[str, list[datetime]] = defaultdict(list)
    for row in _rows(synthetic.police_incidents):
        key = normalise_identifier(row["national_id"])
        try:
            contacts[key].append(datetime.strptime(row["reported_at"], "%d/%m/%Y %H:%M"))
        except ValueError:
            continue
    overdoses = linked = 0
    for row in _rows(synthetic.ed_visits):
        if triage[row["triage_code"].strip().upper()] != "overdose":
            continue
        overdoses += 1
        arrival = datetime.strptime(row["arrival_time"], "%Y-%m-%d %H:%M")
        before = contacts.get(normalise_identifier(row["patient_national_id"]), [])
        linked += any(timedelta(0) < arrival - when <= timedelta(days=31) for when in before)
    assert overdoses > 100
    assert 0.25 < linked / overdoses < 0.8


@pytest.mark.parametrize(
    ("months", "people", "message"),
    [
        (("2023-1", "2025-12"), 1000, "months: each bound must be a month"),
        (("2025-12", "2023-01"), 1000, "months: the first month must not be after"),
        (("2025-01", "2025-12"), 1000, "months: must include 2024-07"),
        (("2023-01", "2025-12"), 10, "people: must be a whole number of at least 100"),
    ],
)
def test_bad_parameters_are_refused(
    tmp_path: Path, months: tuple[str, str], people: int, message: str
) -> None:
    """Bad sizes or month ranges are refused by name, and nothing is written."""
    with pytest.raises(ConfigError, match=message):
        generate(tmp_path / "out", people=people, months=months)
    assert not (tmp_path / "out").exists()


def test_planted_rows_are_documented() -> None:
    """One dirty row of each kind per file, and at least one rare cell per dataset."""
    assert sorted((d.file, d.field) for d in DIRTY_ROWS) == sorted(
        (file, field)
        for file in ("ed_visits.csv", "police_incidents.csv")
        for field in ("event_date", "district", "subject")
    )
    assert {cell.dataset for cell in PLANTED_CELLS} == {"ed_visits", "police_incidents"}
    assert all(1 <= cell.people <= 4 for cell in PLANTED_CELLS)
