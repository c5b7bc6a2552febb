"""Synthetic agency exports for the demo and benchmarks: no real person is in them.

`generate` writes, into one folder, what two agencies' systems would export before the agent
touches it, identifiers and all:

    police_incidents.csv   one row per person involved in an incident (Metro Police)
    ed_visits.csv          one row per emergency department attendance (City Hospital)
    lookups/postcode_district.csv     postcode -> D01..D20
    lookups/offence_category.csv      offence or call code -> incident_type
    lookups/triage_presentation.csv   triage code -> presentation

Both exports carry columns that must never leave the agency (names, free-text notes, GP
practice, record references). The same people appear in both, their national id formatted
differently in each ("ab 12 34 56 c" by the police, "AB-123456-C" by the hospital), so only a
normalising pseudonymiser links them.

What is in the data, on purpose:
- 20 districts with unequal populations (D01 largest, D20 smallest), 36 months by default with
  seasonality (ED peaks in winter, police in summer), ages 0-95, sexes F/M and a few unrecorded.
- A small at-risk group, concentrated in districts D03, D07 and D12, whose ED visits are often
  overdoses; for about 45% of their overdose visits the same person had a police contact
  (drugs, welfare check or disturbance) 1-30 days before.
- Planted rare cells (PLANTED_CELLS): combinations the natural generator never produces
  (no overdose under 18, no drugs incident at 65+), planted for 2-3 people each, so a query
  grouped finely enough must show suppression.
- Planted dirty rows (DIRTY_ROWS), one of each kind per file, each rejected by the agent at
  exactly one field: an impossible date, a postcode in no district, an empty id. Every other
  row maps cleanly.

Deterministic for a seed. Rows are streamed to the files person by person (about 3 rows per
person per file), so `people=350_000` makes roughly a million rows a file in constant memory.
Files appear whole or not at all: they are written beside and renamed at the end.
"""

from __future__ import annotations

import calendar
import csv
import itertools
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO

from gateway.errors import ConfigError

POLICE_FILE = "police_incidents.csv"
ED_FILE = "ed_visits.csv"
POSTCODE_LOOKUP = "lookups/postcode_district.csv"
OFFENCE_LOOKUP = "lookups/offence_category.csv"
TRIAGE_LOOKUP = "lookups/triage_presentation.csv"

POLICE_COLUMNS = (
    "incident_ref",
    "reported_at",
    "person_name",
    "national_id",
    "date_of_birth",
    "sex",
    "incident_postcode",
    "offence_code",
    "officer_notes",
)
ED_COLUMNS = (
    "attendance_id",
    "patient_national_id",
    "patient_name",
    "date_of_birth",
    "sex",
    "home_postcode",
    "arrival_time",
    "departure_time",
    "triage_code",
    "gp_practice",
    "clinical_notes",
)
POLICE_TIME_FORMAT = "%d/%m/%Y %H:%M"
POLICE_DOB_FORMAT = "%d/%m/%Y"
ED_TIME_FORMAT = "%Y-%m-%d %H:%M"
ED_DOB_FORMAT = "%Y-%m-%d"
POLICE_SEX = {"F": "Female", "M": "Male", "X": "Not recorded"}
ED_SEX = {"F": "F", "M": "M", "X": "U"}

DISTRICTS = tuple(f"D{n:02d}" for n in range(1, 21))
# relative populations, D01 largest; D17-D20 are small enough that fine cells stay tiny
_DISTRICT_WEIGHTS = (14, 12, 10, 9, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3.5, 3, 3, 2, 2, 1.5, 1)
HOTSPOTS = ("D03", "D07", "D12")

OFFENCE_CODES: dict[str, tuple[str, ...]] = {
    "assault": ("OF101", "OF102", "OF103"),
    "theft": ("OF201", "OF202", "OF203"),
    "disturbance": ("OF301", "OF302"),
    "drugs": ("OF401", "OF402"),
    "mental_health": ("CL501", "CL502"),
    "welfare_check": ("CL601", "CL602"),
    "traffic": ("OF701", "OF702"),
    "other": ("OF999", "CL999"),
}
TRIAGE_CODES: dict[str, tuple[str, ...]] = {
    "overdose": ("TR11", "TR12"),
    "injury": ("TR01", "TR02", "TR03"),
    "mental_health": ("TR21", "TR22"),
    "alcohol": ("TR31", "TR32"),
    "respiratory": ("TR41", "TR42"),
    "cardiac": ("TR51", "TR52"),
    "other": ("TR90", "TR99"),
}
_POLICE_MIX = {
    "theft": 25, "traffic": 18, "assault": 15, "disturbance": 15,
    "welfare_check": 8, "mental_health": 7, "drugs": 4, "other": 8,
}  # fmt: skip
_POLICE_AT_RISK_MIX = {
    "drugs": 30, "welfare_check": 20, "disturbance": 15, "mental_health": 10,
    "assault": 10, "theft": 10, "other": 5,
}  # fmt: skip
_LINKED_POLICE_MIX = {"drugs": 50, "welfare_check": 30, "disturbance": 20}
_ED_MIX = {
    "injury": 30, "respiratory": 20, "other": 17, "cardiac": 10,
    "mental_health": 9, "alcohol": 7, "overdose": 1.5,
}  # fmt: skip
_ED_AT_RISK_MIX = {
    "overdose": 40, "injury": 18, "mental_health": 15, "alcohol": 15, "other": 7, "respiratory": 5,
}  # fmt: skip
_AGE_MIX = ((0, 17, 20), (18, 24, 10), (25, 34, 16), (35, 44, 15), (45, 54, 14), (55, 64, 12), (65, 95, 13))

_FIRST = (
    "Amara", "Ben", "Chloe", "Dmitri", "Elif", "Farah", "George", "Hana", "Isaac", "Jade", "Kofi",
    "Lena", "Marco", "Nia", "Oscar", "Priya", "Quentin", "Rosa", "Sami", "Tara", "Umar", "Vera",
    "Wade", "Ximena", "Yusuf", "Zoe", "Aled", "Bronwen", "Ciaran", "Dalia",
)  # fmt: skip
_LAST = (
    "Abara", "Baker", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ibrahim", "Jones",
    "Kowalski", "Lindqvist", "Murphy", "Nakamura", "Okafor", "Patel", "Quinn", "Rossi", "Singh",
    "Thompson", "Usman", "Varga", "Walsh", "Xu", "Young", "Zielinski",
)  # fmt: skip
_POLICE_NOTES = (
    "{name} spoken to at the scene; advised and released.",
    "Call from neighbour about {first}; officers attended.",
    "{name} known to officers; property returned.",
    "Attended with ambulance; {first} taken to ED.",
)
_ED_NOTES = (
    "Pt {first} brought in by ambulance, alert on arrival.",
    "{name} self-presented; next of kin informed.",
    "Reviewed by registrar; {first} discharged with advice.",
    "Pt {name} observed overnight.",
)
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class _Mix:
    """Weighted categories with their cumulative weights computed once (rng.choices is hot)."""

    values: tuple[str, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def of(cls, weights: Mapping[str, float]) -> _Mix:
        total, cumulative = 0.0, []
        for weight in weights.values():
            total += weight
            cumulative.append(total)
        return cls(tuple(weights), tuple(cumulative))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.values, cum_weights=self.cumulative)[0]


@dataclass(frozen=True)
class PlantedCell:
    """A deliberately rare combination: exactly `people` distinct people, one record each."""

    dataset: str
    district: str
    month: str
    age_band: str
    category: str  # presentation for ed_visits, incident_type for police_incidents
    people: int


@dataclass(frozen=True)
class DirtyRow:
    """A planted bad row and the agent field that must reject it."""

    file: str
    problem: str
    field: str


PLANTED_CELLS = (
    PlantedCell("ed_visits", "D20", "2024-07", "0-17", "overdose", 3),
    PlantedCell("police_incidents", "D17", "2023-11", "65+", "drugs", 2),
)
DIRTY_ROWS = (
    DirtyRow(ED_FILE, "impossible date (30 February)", "event_date"),
    DirtyRow(ED_FILE, "postcode in no district", "district"),
    DirtyRow(ED_FILE, "empty national id", "subject"),
    DirtyRow(POLICE_FILE, "impossible date (31 April)", "event_date"),
    DirtyRow(POLICE_FILE, "postcode in no district", "district"),
    DirtyRow(POLICE_FILE, "empty national id", "subject"),
)


@dataclass(frozen=True)
class SyntheticFiles:
    folder: Path
    police_incidents: Path
    ed_visits: Path
    postcode_district: Path
    offence_category: Path
    triage_presentation: Path
    people: int
    people_in_both: int
    police_rows: int
    ed_rows: int
    dirty_rows: tuple[DirtyRow, ...] = DIRTY_ROWS
    rare_cells: tuple[PlantedCell, ...] = PLANTED_CELLS

    def __str__(self) -> str:
        return (
            f"{self.police_incidents.name} ({self.police_rows} rows) and {self.ed_visits.name} "
            f"({self.ed_rows} rows) in {self.folder}, for {self.people} people, {self.people_in_both} "
            f"in both; {len(self.dirty_rows)} planted dirty rows, {len(self.rare_cells)} planted rare cells"
        )


@dataclass
class _Person:
    national_id: str
    first: str
    last: str
    sex: str
    birth: date
    postcode: str
    at_risk: bool

    @property
    def name(self) -> str:
        return f"{self.first} {self.last}"


@dataclass(frozen=True)
class _Period:
    first: date
    months: tuple[tuple[int, int], ...]

    @property
    def last(self) -> date:
        year, month = self.months[-1]
        return date(year, month, calendar.monthrange(year, month)[1])


@dataclass
class _Writers:
    police: Callable[[Sequence[str]], object]
    ed: Callable[[Sequence[str]], object]
    police_rows: int = 0
    ed_rows: int = 0
    people_in_both: int = 0


def generate(
    out_dir: Path,
    *,
    seed: int = 7,
    people: int = 6000,
    months: tuple[str, str] = ("2023-01", "2025-12"),
) -> SyntheticFiles:
    """Write the two exports and three lookups into out_dir; see the module docstring."""
    if not isinstance(people, int) or people < 100:
        raise ConfigError("people: must be a whole number of at least 100")
    period = _period(months)
    for cell in PLANTED_CELLS:
        if not any(f"{y:04d}-{m:02d}" == cell.month for y, m in period.months):
            raise ConfigError(f"months: must include {cell.month}, the month of a planted rare cell")
    rng = random.Random(seed)  # noqa: S311 - reproducible fake data, not a secret
    out_dir = Path(out_dir)
    postcodes = _postcodes(rng)
    with _atomic_files(
        out_dir, [POLICE_FILE, ED_FILE, POSTCODE_LOOKUP, OFFENCE_LOOKUP, TRIAGE_LOOKUP]
    ) as handles:
        _write_lookups(handles, postcodes)
        police, ed = csv.writer(handles[POLICE_FILE]), csv.writer(handles[ED_FILE])
        police.writerow(POLICE_COLUMNS)
        ed.writerow(ED_COLUMNS)
        writers = _Writers(police.writerow, ed.writerow)
        generator = _Generator(rng, period, postcodes, writers)
        dirty_at = {people // 4: 0, people // 2: 1, (3 * people) // 4: 2}
        for index in range(people):
            generator.natural_person()
            if index == people // 3:
                generator.planted_cells()
            if index in dirty_at:
                generator.dirty_rows(dirty_at[index])
        total = people + sum(cell.people for cell in PLANTED_CELLS)
    return SyntheticFiles(
        folder=out_dir,
        police_incidents=out_dir / POLICE_FILE,
        ed_visits=out_dir / ED_FILE,
        postcode_district=out_dir / POSTCODE_LOOKUP,
        offence_category=out_dir / OFFENCE_LOOKUP,
        triage_presentation=out_dir / TRIAGE_LOOKUP,
        people=total,
        people_in_both=writers.people_in_both,
        police_rows=writers.police_rows,
        ed_rows=writers.ed_rows,
    )


def _age(birth: date, on: date) -> int:
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


class _Generator:
    def __init__(
        self, rng: random.Random, period: _Period, postcodes: dict[str, list[str]], out: _Writers
    ) -> None:
        self.rng, self.period, self.postcodes, self.out = rng, period, postcodes, out
        self.ids: set[str] = set()
        self.counter = 0
        self.all_postcodes = [p for district in DISTRICTS for p in postcodes[district]]
        self.police_mix, self.police_at_risk_mix = _Mix.of(_POLICE_MIX), _Mix.of(_POLICE_AT_RISK_MIX)
        self.linked_mix = _Mix.of(_LINKED_POLICE_MIX)
        self.ed_mix, self.ed_at_risk_mix = _Mix.of(_ED_MIX), _Mix.of(_ED_AT_RISK_MIX)
        self.district_weights = _Mix.of(dict(zip(DISTRICTS, _DISTRICT_WEIGHTS, strict=True)))
        self.age_weights = tuple(itertools.accumulate(weight for _, _, weight in _AGE_MIX))
        # seasonality and a gentle upward trend, per month of the period
        self.ed_weights = self._cumulative(
            lambda m, i: 1 + 0.25 * math.cos(2 * math.pi * (m - 1) / 12) + 0.01 * i
        )
        self.police_weights = self._cumulative(
            lambda m, i: 1 + 0.25 * math.cos(2 * math.pi * (m - 7) / 12) + 0.01 * i
        )

    def _cumulative(self, weight: Callable[[int, int], float]) -> list[float]:
        total, out = 0.0, []
        for index, (_year, month) in enumerate(self.period.months):
            total += weight(month, index)
            out.append(total)
        return out

    # --- people ---------------------------------------------------------------------------

    def _new_id(self) -> str:
        rng = self.rng
        while True:
            letters = "ABCEGHJKLMNPRSTWXYZ"
            candidate = (
                rng.choice(letters)
                + rng.choice(letters)
                + f"{rng.randrange(1_000_000):06d}"
                + rng.choice("ABCD")
            )
            if candidate not in self.ids:
                self.ids.add(candidate)
                return candidate

    def _person(self, *, district: str, age_on_first: int, at_risk: bool) -> _Person:
        rng = self.rng
        birth = self.period.first - timedelta(days=age_on_first * 365 + rng.randrange(1, 365))
        roll = rng.random()
        sex = "F" if roll < 0.49 else "M" if roll < 0.98 else "X"
        return _Person(
            self._new_id(),
            rng.choice(_FIRST),
            rng.choice(_LAST),
            sex,
            birth,
            rng.choice(self.postcodes[district]),
            at_risk,
        )

    def natural_person(self) -> None:
        rng = self.rng
        district = self.district_weights.draw(rng)
        low, high, _ = rng.choices(_AGE_MIX, cum_weights=self.age_weights)[0]
        age = rng.randint(low, high)
        risk = 0.06 if district in HOTSPOTS else 0.012
        at_risk = 16 <= age <= 60 and rng.random() < risk
        person = self._person(district=district, age_on_first=age, at_risk=at_risk)
        in_health = rng.random() < (0.95 if at_risk else 0.7)
        in_police = rng.random() < (0.85 if at_risk else 0.5)
        ed_visits = self._count(4.5 * (2.5 if at_risk else 1)) if in_health else 0
        police = self._count(5.5 * (2.0 if at_risk else 1)) if in_police else 0
        wrote_police = wrote_ed = False
        for _ in range(police):
            moment = self._moment(self.police_weights)
            self._police_row(person, moment, self._police_category(person, moment))
            wrote_police = True
        for _ in range(ed_visits):
            moment = self._moment(self.ed_weights)
            presentation = self._presentation(person, moment)
            self._ed_row(person, moment, presentation)
            wrote_ed = True
            if presentation == "overdose" and rng.random() < 0.45:
                before = moment - timedelta(days=rng.randint(1, 30), minutes=rng.randrange(1440))
                if before.date() >= self.period.first:
                    self._police_row(person, before, self._police_category(person, before, self.linked_mix))
                    wrote_police = True
        if wrote_police and wrote_ed:
            self.out.people_in_both += 1

    def _count(self, mean: float) -> int:
        return 1 + int(self.rng.expovariate(1 / max(mean - 1, 0.1)))

    def _moment(self, cumulative: list[float]) -> datetime:
        rng = self.rng
        year, month = rng.choices(self.period.months, cum_weights=cumulative)[0]
        day = rng.randint(1, calendar.monthrange(year, month)[1])
        return datetime(year, month, day, rng.randrange(24), rng.randrange(60))

    def _police_category(self, person: _Person, moment: datetime, mix: _Mix | None = None) -> str:
        mix = mix or (self.police_at_risk_mix if person.at_risk else self.police_mix)
        category = mix.draw(self.rng)
        if category == "drugs" and _age(person.birth, moment.date()) >= 65:
            category = "disturbance"  # keeps the planted 65+ drugs cell exact
        return category

    def _presentation(self, person: _Person, moment: datetime) -> str:
        presentation = (self.ed_at_risk_mix if person.at_risk else self.ed_mix).draw(self.rng)
        if presentation == "overdose" and _age(person.birth, moment.date()) < 18:
            presentation = "alcohol"  # keeps the planted under-18 overdose cell exact
        return presentation

    # --- planted rows -----------------------------------------------------------------------

    def planted_cells(self) -> None:
        for cell in PLANTED_CELLS:
            year, month = (int(part) for part in cell.month.split("-"))
            for _ in range(cell.people):
                moment = datetime(
                    year, month, self.rng.randint(1, 28), self.rng.randrange(24), self.rng.randrange(60)
                )
                age = 16 if cell.age_band == "0-17" else 70
                person = self._person(district=cell.district, age_on_first=age, at_risk=False)
                # the birthday falls the day after the event, so the age on the day is exactly `age`
                person.birth = date(moment.year - age - 1, moment.month, moment.day) + timedelta(days=1)
                if cell.dataset == "ed_visits":
                    self._ed_row(person, moment, cell.category)
                else:
                    self._police_row(person, moment, cell.category, location=person.postcode)

    def dirty_rows(self, which: int) -> None:
        """One dirty row per file of kind `which` (DIRTY_ROWS order: date, postcode, id)."""
        # a different made-up person per file, so dirty rows add nobody to the overlap
        patient = self._person(district="D01", age_on_first=40, at_risk=False)
        suspect = self._person(district="D02", age_on_first=30, at_risk=False)
        moment = datetime(2024, 2, 12, 9, 15)
        ed_overrides: dict[str, str] = {}
        police_overrides: dict[str, str] = {}
        if which == 0:
            ed_overrides["arrival_time"] = "2024-02-30 09:15"
            police_overrides["reported_at"] = "31/04/2024 22:10"
        elif which == 1:
            ed_overrides["home_postcode"] = police_overrides["incident_postcode"] = "ZZ99 9ZZ"
        else:
            ed_overrides["patient_national_id"] = ""
            police_overrides["national_id"] = "  "
        self._ed_row(patient, moment, "injury", overrides=ed_overrides)
        self._police_row(suspect, moment, "theft", overrides=police_overrides)

    # --- rows ---------------------------------------------------------------------------------

    def _ed_row(
        self,
        person: _Person,
        arrival: datetime,
        presentation: str,
        *,
        overrides: dict[str, str] | None = None,
    ) -> None:
        rng = self.rng
        self.counter += 1
        stay = timedelta(hours=min(rng.lognormvariate(1.3, 0.8), 100.0))
        departure = arrival + stay
        values = {
            "attendance_id": f"ED{self.counter:08d}",
            "patient_national_id": _ed_id_style(rng, person.national_id),
            "patient_name": person.name,
            "date_of_birth": person.birth.isoformat(),
            "sex": ED_SEX[person.sex] if rng.random() > 0.01 else "",
            "home_postcode": _case_style(rng, person.postcode),
            "arrival_time": _ed_time(arrival),
            "departure_time": _ed_time(departure),
            "triage_code": _case_style(rng, rng.choice(TRIAGE_CODES[presentation])),
            "gp_practice": f"Practice {rng.randint(1, 60):02d}",
            "clinical_notes": rng.choice(_ED_NOTES).format(name=person.name, first=person.first),
        }
        values.update(overrides or {})
        self.out.ed([values[c] for c in ED_COLUMNS])
        self.out.ed_rows += 1

    def _police_row(
        self,
        person: _Person,
        moment: datetime,
        category: str,
        *,
        location: str | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        rng = self.rng
        self.counter += 1
        if location is None:
            location = person.postcode if rng.random() < 0.8 else rng.choice(self.all_postcodes)
        values = {
            "incident_ref": f"INC-{moment.year}-{self.counter:07d}",
            "reported_at": _police_time(moment),
            "person_name": person.name,
            "national_id": _police_id_style(rng, person.national_id),
            "date_of_birth": f"{person.birth.day:02d}/{person.birth.month:02d}/{person.birth.year:04d}",
            "sex": POLICE_SEX[person.sex] if rng.random() > 0.02 else "",
            "incident_postcode": _case_style(rng, location),
            "offence_code": rng.choice(OFFENCE_CODES[category]),
            "officer_notes": rng.choice(_POLICE_NOTES).format(name=person.name, first=person.first),
        }
        values.update(overrides or {})
        self.out.police([values[c] for c in POLICE_COLUMNS])
        self.out.police_rows += 1


def _ed_time(moment: datetime) -> str:
    """ED_TIME_FORMAT, without strftime's cost."""
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d} {moment.hour:02d}:{moment.minute:02d}"


def _police_time(moment: datetime) -> str:
    """POLICE_TIME_FORMAT, without strftime's cost."""
    return f"{moment.day:02d}/{moment.month:02d}/{moment.year:04d} {moment.hour:02d}:{moment.minute:02d}"


def _police_id_style(rng: random.Random, canonical: str) -> str:
    spaced = f"{canonical[:2]} {canonical[2:4]} {canonical[4:6]} {canonical[6:8]} {canonical[8:]}"
    return rng.choice((spaced, spaced.lower(), canonical, canonical.lower()))


def _ed_id_style(rng: random.Random, canonical: str) -> str:
    dashed = f"{canonical[:2]}-{canonical[2:8]}-{canonical[8:]}"
    return rng.choice((dashed, canonical, f" {canonical.lower()} ", dashed.lower()))


def _case_style(rng: random.Random, text: str) -> str:
    roll = rng.random()
    if roll < 0.08:
        return text.lower()
    if roll < 0.12:
        return f" {text} "
    return text


def _period(months: tuple[str, str]) -> _Period:
    parsed = []
    for text in months:
        match = _MONTH.match(text) if isinstance(text, str) else None
        if match is None:
            raise ConfigError("months: each bound must be a month like 2023-01")
        parsed.append((int(match[1]), int(match[2])))
    (y0, m0), (y1, m1) = parsed
    if (y1, m1) < (y0, m0):
        raise ConfigError("months: the first month must not be after the last")
    out = []
    year, month = y0, m0
    while (year, month) <= (y1, m1):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return _Period(date(y0, m0, 1), tuple(out))


def _postcodes(rng: random.Random) -> dict[str, list[str]]:
    """3-8 postcodes per district, more for the larger ones; no two alike."""
    result: dict[str, list[str]] = {}
    for number, (district, weight) in enumerate(zip(DISTRICTS, _DISTRICT_WEIGHTS, strict=True), start=1):
        count = max(3, min(8, round(weight / 1.7)))
        codes = []
        for sector in range(count):
            inward = f"{sector}{rng.choice('ABDEFGHJLNPQRSTUWXY')}{rng.choice('ABDEFGHJLNPQRSTUWXY')}"
            codes.append(f"MC{number} {inward}")
        result[district] = codes
    return result


def _write_lookups(handles: Mapping[str, TextIO], postcodes: dict[str, list[str]]) -> None:
    writer = csv.writer(handles[POSTCODE_LOOKUP])
    writer.writerow(("postcode", "district"))
    for district in DISTRICTS:
        writer.writerows((code, district) for code in postcodes[district])
    writer = csv.writer(handles[OFFENCE_LOOKUP])
    writer.writerow(("offence_code", "incident_type"))
    for category, codes in OFFENCE_CODES.items():
        writer.writerows((code, category) for code in codes)
    writer = csv.writer(handles[TRIAGE_LOOKUP])
    writer.writerow(("triage_code", "presentation"))
    for presentation, codes in TRIAGE_CODES.items():
        writer.writerows((code, presentation) for code in codes)


@contextmanager
def _atomic_files(folder: Path, names: Sequence[str]) -> Iterator[Mapping[str, TextIO]]:
    """Open each file beside its final name; rename all on success, remove all on failure."""
    temps = {name: folder / f"{name}.partial" for name in names}
    try:
        for path in temps.values():
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot create the data folder ({exc.strerror})") from exc
    try:
        with ExitStack() as stack:
            handles = {
                name: stack.enter_context(path.open("w", encoding="utf-8", newline=""))
                for name, path in temps.items()
            }
            yield handles
        for name, path in temps.items():
            path.replace(folder / name)
    except OSError as exc:
        raise ConfigError(f"{folder}: cannot write the synthetic data ({exc.strerror})") from exc
    finally:
        for path in temps.values():
            path.unlink(missing_ok=True)
