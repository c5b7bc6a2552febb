"""The mapper: pseudonyms, coarsening, age bands, lookups, clamping, and its start-up checks."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from agent_testkit import Workspace, ed_row, make_contract
from hypothesis import given
from hypothesis import strategies as st

from agents import ConfigError, Contract, Pseudonymiser, build_mapper, load_config, normalise_identifier
from agents._mapping import Mapper, Rejected
from agents._pb import common_pb2

KEY = bytes(range(32))


def _mapper(workspace: Workspace, granularity: str = "day", key: bytes = KEY) -> Mapper:
    return build_mapper(load_config(workspace.config), Contract.from_proto(make_contract(granularity)), key)


def _days(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def _band(mapper: Mapper, **row: str) -> str:
    _token, _day, codes, _values = mapper.map(ed_row(**row))
    return mapper.contract.dimensions[1].domain[codes[1]]


def test_normalisation_makes_formatting_irrelevant() -> None:
    """' ab-12 34 5c ' and 'AB12345C' normalise, and so pseudonymise, to the same token."""
    assert normalise_identifier(" ab-12 34 5c ") == normalise_identifier("AB12345C") == "AB12345C"
    pseudonymiser = Pseudonymiser(KEY)
    assert pseudonymiser.token_for(" ab-12 34 5c ") == pseudonymiser.token_for("AB12345C")


def test_normalisation_strips_accents_and_unicode_spacing() -> None:
    """Accented and full-width forms match their plain ASCII spelling."""
    assert normalise_identifier("Jos\u00e9\u00a0Mar\u00eda-7") == "JOSEMARIA7"
    assert normalise_identifier("\uff21\uff22\uff11\uff12") == "AB12"  # full-width letters and digits


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=30))
def test_normalisation_ignores_case_spacing_and_punctuation(raw: str) -> None:
    """Adding spaces and punctuation or changing case never changes an ASCII identifier's form."""
    noisy = " -" + "., ".join(raw.swapcase()) + "\t"
    assert normalise_identifier(noisy) == normalise_identifier(raw)
    assert normalise_identifier(normalise_identifier(raw)) == normalise_identifier(raw)


def test_different_linkage_keys_give_different_tokens() -> None:
    """The same identifier under two consortium keys cannot be linked."""
    assert Pseudonymiser(KEY).token_for("AB123456C") != Pseudonymiser(bytes(32)).token_for("AB123456C")


def test_token_never_equals_or_contains_the_identifier() -> None:
    """The 32-byte pseudonym holds no trace of the identifier, raw or hex-encoded."""
    for raw in ("AB123456C", "12345678901234567890123456789012", "ZZ-00-00-01"):
        token = Pseudonymiser(KEY).token_for(raw)
        assert token is not None
        assert len(token) == 32
        assert raw.encode() not in token
        assert raw.lower() not in token.hex()
        assert token != raw.encode()


def test_several_id_columns_are_joined_unambiguously() -> None:
    """('AB', 'C') and ('A', 'BC') are different people."""
    pseudonymiser = Pseudonymiser(KEY)
    assert pseudonymiser.token_for("AB", "C") != pseudonymiser.token_for("A", "BC")
    assert pseudonymiser.token_for("AB", "") is None


def test_empty_identifier_is_rejected_naming_subject(workspace: Workspace) -> None:
    """An id that is empty after normalisation rejects the record with 'subject: missing identifier'."""
    with pytest.raises(Rejected, match=r"^subject: missing identifier$"):
        _mapper(workspace).map(ed_row(patient_national_id=" - "))


@pytest.mark.parametrize(
    ("birth", "event", "band"),
    [
        ("2006-03-15", "2024-03-15 00:00", "18-24"),  # 18th birthday on the event day
        ("2006-03-15", "2024-03-14 23:59", "0-17"),  # the day before
        ("1959-07-01", "2024-07-01 08:00", "65+"),
        ("1959-07-01", "2024-06-30 08:00", "55-64"),
        ("2024-02-29", "2024-02-29 12:00", "0-17"),  # born on the day
        ("2000-02-29", "2025-02-28 12:00", "18-24"),  # leap-day birthday not yet reached
        ("2000-02-29", "2025-03-01 12:00", "25-34"),
        ("1900-01-01", "2024-01-01 12:00", "65+"),
    ],
)
def test_age_band_boundaries(workspace: Workspace, birth: str, event: str, band: str) -> None:
    """Age is whole years on the event date; a birthday on the day counts."""
    assert _band(_mapper(workspace), date_of_birth=birth, arrival_time=event) == band


def test_birth_after_event_is_rejected(workspace: Workspace) -> None:
    """A date of birth after the event rejects the record at age_band."""
    with pytest.raises(Rejected, match=r"^age_band: date of birth is after the event date$"):
        _mapper(workspace).map(ed_row(date_of_birth="2024-03-16"))


def test_event_date_kept_to_the_day(workspace: Workspace) -> None:
    """Day granularity sends the day itself."""
    _token, day, _codes, _values = _mapper(workspace, "day").map(ed_row(arrival_time="2024-03-15 23:59"))
    assert day == _days(date(2024, 3, 15))


def test_event_date_coarsened_to_month(workspace: Workspace) -> None:
    """Month granularity sends the first of the month."""
    mapper = _mapper(workspace, "month")
    for text in ("2024-03-01 00:00", "2024-03-15 10:00", "2024-03-31 23:59"):
        assert mapper.map(ed_row(arrival_time=text, departure_time=text))[1] == _days(date(2024, 3, 1))


@pytest.mark.parametrize(
    ("row", "field", "problem"),
    [
        ({"arrival_time": "2024-13-45 10:00"}, "event_date", "not a valid date in the configured format"),
        ({"arrival_time": "15/03/2024 10:00"}, "event_date", "not a valid date in the configured format"),
        ({"arrival_time": ""}, "event_date", "missing date"),
        (
            {"arrival_time": "1850-01-01 10:00", "date_of_birth": "1800-01-01"},
            "event_date",
            "outside the years",
        ),
        ({"home_postcode": "ZZ9 9ZZ"}, "district", "no entry in the lookup file"),
        ({"home_postcode": ""}, "district", "missing value"),
        ({"triage_code": "T99"}, "presentation", "no entry in the lookup file"),
        ({"sex": "female"}, "sex", "value not listed in the map"),
        ({"date_of_birth": "17/05/1990"}, "age_band", "not a valid date in the configured format"),
        ({"departure_time": "later"}, "length_of_stay_hours", "not a valid date in the configured format"),
    ],
)
def test_rejects_name_the_field_not_the_value(
    workspace: Workspace, row: dict[str, str], field: str, problem: str
) -> None:
    """Each kind of bad value rejects the record with the field at fault and no value in the reason."""
    with pytest.raises(Rejected) as caught:
        _mapper(workspace).map(ed_row(**row))
    assert caught.value.field == field
    assert caught.value.problem.startswith(problem)
    for value in row.values():
        if value:
            assert value not in str(caught.value)


def test_lookup_keys_are_trimmed_and_upper_cased(workspace: Workspace) -> None:
    """' zx3 3cc ' finds the lookup entry written 'zx3 3cc' in the file."""
    _token, _day, codes, _values = _mapper(workspace).map(ed_row(home_postcode=" Zx3 3CC "))
    assert codes[0] == 2  # D03


@pytest.mark.parametrize(
    ("arrival", "departure", "hours"),
    [
        ("2024-03-15 10:00", "2024-03-15 10:45", 0.75),
        ("2024-03-01 10:00", "2024-03-15 10:00", 72.0),  # clamped to the contract's max
        ("2024-03-15 10:00", "2024-03-15 09:00", 0.0),  # clamped to the contract's min
    ],
)
def test_hours_between_is_clamped(workspace: Workspace, arrival: str, departure: str, hours: float) -> None:
    """Length of stay is the hours between two times, clamped to the contract bounds."""
    record = _mapper(workspace).map(ed_row(arrival_time=arrival, departure_time=departure))
    assert record[3] == (hours,)


def test_number_transform_parses_and_clamps(workspace: Workspace) -> None:
    """The number transform reads a column as a float and clamps it; text is rejected."""
    hours = (
        'transform = "hours_between"\ncolumns = ["arrival_time", "departure_time"]\nformat = "%Y-%m-%d %H:%M"'
    )
    text = workspace.config.read_text().replace(hours, 'transform = "number"\ncolumn = "attendance_id"')
    workspace.config.write_text(text)
    mapper = _mapper(workspace)
    assert mapper.map(ed_row(attendance_id=" 12.5 "))[3] == (12.5,)
    assert mapper.map(ed_row(attendance_id="1e9"))[3] == (72.0,)
    for bad, problem in (("twelve", "not a number"), ("nan", "not a finite number"), ("", "missing number")):
        with pytest.raises(Rejected, match=f"^length_of_stay_hours: {problem}$"):
            mapper.map(ed_row(attendance_id=bad))


def test_every_contract_column_must_be_mapped(workspace: Workspace) -> None:
    """A contract column with no mapping is a ConfigError naming it."""
    text = workspace.config.read_text()
    start = text.index("[fields.presentation]")
    end = text.index("[fields.length_of_stay_hours]")
    workspace.config.write_text(text[:start] + text[end:])
    with pytest.raises(
        ConfigError, match=r"fields\.presentation: missing; the contract for dataset ed_visits"
    ):
        _mapper(workspace)


def test_fields_outside_the_contract_are_refused(workspace: Workspace) -> None:
    """Mapping a field the contract does not have is a ConfigError naming it."""
    workspace.write_config(
        extra='\n[fields.ethnicity]\ntransform = "map"\ncolumn = "sex"\nmap = { F = "F" }\n'
    )
    with pytest.raises(ConfigError, match=r"fields\.ethnicity: not a column of the contract"):
        _mapper(workspace)


def test_map_values_must_be_in_the_domain(workspace: Workspace) -> None:
    """A map that can produce a value outside the domain is refused at start-up."""
    workspace.config.write_text(workspace.config.read_text().replace('U = "X"', 'U = "unknown"'))
    with pytest.raises(ConfigError, match=r"fields\.sex\.map: every value must be in the contract's domain"):
        _mapper(workspace)


def test_lookup_values_must_be_in_the_domain(workspace: Workspace) -> None:
    """A lookup file row whose value is outside the domain is refused, naming file and line."""
    (workspace.root / "lookups" / "postcode_district.csv").write_text(
        "postcode,district\nZX1 1AA,D01\nZX9,D99\n"
    )
    with pytest.raises(
        ConfigError, match=r"postcode_district\.csv: line 3: value is not in the contract's domain"
    ):
        _mapper(workspace)


def test_lookup_keys_may_not_conflict(workspace: Workspace) -> None:
    """The same key twice with different values is refused."""
    (workspace.root / "lookups" / "postcode_district.csv").write_text(
        "postcode,district\nZX1 1AA,D01\nzx1 1aa,D02\n"
    )
    with pytest.raises(ConfigError, match=r"line 3: key listed twice with different values"):
        _mapper(workspace)


def test_missing_lookup_file_is_named(workspace: Workspace) -> None:
    """A lookup file that cannot be read is a ConfigError naming it."""
    (workspace.root / "lookups" / "triage_presentation.csv").unlink()
    with pytest.raises(ConfigError, match=r"triage_presentation\.csv: cannot read the lookup file"):
        _mapper(workspace)


def test_dimension_needs_a_dimension_transform(workspace: Workspace) -> None:
    """A number transform on a dimension is refused naming the field."""
    workspace.config.write_text(
        workspace.config.read_text().replace(
            'transform = "map"\ncolumn = "sex"\nmap = { F = "F", M = "M", U = "X", "" = "X" }',
            'transform = "number"\ncolumn = "sex"',
        )
    )
    with pytest.raises(ConfigError, match=r"fields\.sex\.transform: sex is a dimension"):
        _mapper(workspace)


def test_age_bands_are_parsed_from_the_domain(workspace: Workspace) -> None:
    """Other band layouts work as long as the domain strings are bands; other strings are refused."""
    contract = make_contract()
    contract.columns[1].ClearField("domain")
    contract.columns[1].domain.extend(["0-39", "40+"])
    mapper = build_mapper(load_config(workspace.config), Contract.from_proto(contract), KEY)
    assert mapper.map(ed_row(date_of_birth="1984-03-15"))[2][1] == 1  # 40 on the event day
    assert mapper.map(ed_row(date_of_birth="1984-03-16"))[2][1] == 0

    contract.columns[1].domain.append("adult")
    with pytest.raises(ConfigError, match=r"age_band values are not age bands"):
        build_mapper(load_config(workspace.config), Contract.from_proto(contract), KEY)


def test_overlapping_age_bands_are_refused(workspace: Workspace) -> None:
    """Bands that overlap would make a person's band ambiguous."""
    contract = make_contract()
    contract.columns[1].ClearField("domain")
    contract.columns[1].domain.extend(["0-20", "18-24", "25+"])
    with pytest.raises(ConfigError, match=r"bands overlap"):
        build_mapper(load_config(workspace.config), Contract.from_proto(contract), KEY)


def test_contract_from_the_gateway_is_checked() -> None:
    """A contract with an unknown granularity or empty domain is refused, not half-used."""
    bad = make_contract()
    bad.event_date_granularity = "week"
    with pytest.raises(ConfigError, match="event_date_granularity"):
        Contract.from_proto(bad)
    empty = make_contract()
    empty.columns.append(common_pb2.ContractColumn(name="x", kind=common_pb2.COLUMN_KIND_DIMENSION))
    with pytest.raises(ConfigError, match="x: domain"):
        Contract.from_proto(empty)


def test_lookup_file_may_live_anywhere_relative_to_the_config(workspace: Workspace, tmp_path: Path) -> None:
    """Relative lookup paths resolve against the config file's folder, not the working directory."""
    config = load_config(workspace.config)
    lookups = [spec for spec in config.fields if spec.name == "district"]
    assert lookups[0].file == workspace.root.resolve() / "lookups" / "postcode_district.csv"  # type: ignore[union-attr]


def test_measures_sharing_date_columns_each_get_their_own_interval(workspace: Workspace) -> None:
    """Three intervals over overlapping columns (a→b, b→c, t→b) each measure their own span: a
    column parsed once is reused, never overwritten by a later field."""
    contract = make_contract()
    for name in ("to_admit", "admit_to_leave", "triage_to_admit"):
        contract.columns.append(
            common_pb2.ContractColumn(name=name, kind=common_pb2.COLUMN_KIND_MEASURE, min=0, max=1000)
        )
    contract.columns.remove(next(c for c in contract.columns if c.name == "length_of_stay_hours"))
    text = workspace.config.read_text()
    text = text[: text.index("[fields.length_of_stay_hours]")]
    for name, (start, end) in {
        "to_admit": ("arrival_time", "departure_time"),
        "admit_to_leave": ("departure_time", "patient_name"),
        "triage_to_admit": ("attendance_id", "departure_time"),
    }.items():
        text += f'[fields.{name}]\ntransform = "hours_between"\ncolumns = ["{start}", "{end}"]\n'
        text += 'format = "%Y-%m-%d %H:%M"\n\n'
    workspace.config.write_text(text)
    mapper = build_mapper(load_config(workspace.config), Contract.from_proto(contract), KEY)

    row = ed_row(
        arrival_time="2024-03-15 10:00",  # a
        departure_time="2024-03-15 12:00",  # b: admitted
        patient_name="2024-03-15 20:00",  # c: left
        attendance_id="2024-03-15 11:00",  # t: triage
    )
    assert mapper.map(row)[3] == (2.0, 8.0, 1.0)


IDS = [
    "AB123456C",
    " ab-12 34 5c ",
    "zb-413116-a",
    "Jos\u00e9\u00a0Mar\u00eda-7",
    "\uff21\uff22\uff11\uff12",
    "x\u0301y",
]


@pytest.mark.parametrize("raw", IDS)
def test_mapper_token_is_the_documented_pseudonym(workspace: Workspace, raw: str) -> None:
    """The compiled mapper's token (ASCII ids are normalised as bytes) is Pseudonymiser's
    HMAC-SHA256(K_link, normalise(id)), for ASCII and non-ASCII ids alike."""
    token = _mapper(workspace).map(ed_row(patient_national_id=raw))[0]

    assert token == Pseudonymiser(KEY).token_for(raw)


@pytest.mark.parametrize(("first", "second"), [("AB", "C"), ("a-b", " c"), ("Jos\u00e9", "m-7")])
def test_mapper_token_of_several_id_columns_is_the_documented_pseudonym(
    workspace: Workspace, first: str, second: str
) -> None:
    """With two id columns the mapper joins the normalised ids as Pseudonymiser does."""
    text = workspace.config.read_text()
    workspace.config.write_text(
        text.replace('columns = ["patient_national_id"]', 'columns = ["patient_national_id", "patient_name"]')
    )

    token = _mapper(workspace).map(ed_row(patient_national_id=first, patient_name=second))[0]

    assert token == Pseudonymiser(KEY).token_for(first, second)


@pytest.mark.parametrize(
    ("arrival", "departure", "hours"),
    [
        ("2024-03-15 10:00", "2024-03-15 14:30", 4.5),  # ISO: the inlined fast path
        ("2024-3-15 9:00", "2024-03-15 14:30", 5.5),  # not zero-padded: DateParser's own path
    ],
)
def test_event_dates_parse_on_both_paths(
    workspace: Workspace, arrival: str, departure: str, hours: float
) -> None:
    """A zero-padded ISO date and a plain numeric one under the same format map alike."""
    _token, day, _codes, values = _mapper(workspace).map(
        ed_row(arrival_time=arrival, departure_time=departure)
    )

    assert (day, values) == (_days(date(2024, 3, 15)), (hours,))


@pytest.mark.parametrize(
    "arrival", ["2024-02-30 10:00", "2024-03-15T10:00", "2024-03-15 10:00:00", "2024-W11-5 10:0"]
)
def test_iso_like_dates_outside_the_format_are_rejected(workspace: Workspace, arrival: str) -> None:
    """Text that fromisoformat would take but the format does not describe (or an impossible day)
    is rejected naming the field, as strptime would reject it."""
    with pytest.raises(Rejected, match=r"^event_date: not a valid date in the configured format$"):
        _mapper(workspace).map(ed_row(arrival_time=arrival))
