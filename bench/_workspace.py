"""One benchmark workspace: synthetic ED-visits export, development PKI and agent configs."""

from __future__ import annotations

import csv
import socket
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from gateway.demo import generate, write_agent_configs
from gateway.demo._synthetic import ED_DOB_FORMAT, ED_TIME_FORMAT
from gateway.pki import PkiLayout, init_dev_pki

ED_ROWS_PER_PERSON = 2.9
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Workspace:
    root: Path
    layout: PkiLayout
    listen: str
    agent_config: Path
    ed_visits: Path
    ed_rows: int


@dataclass(frozen=True)
class BareRecords:
    """Columns ready for the bare pipeline; parsing the CSV is not part of what it times."""

    ids: list[bytes]
    event_days: list[int]
    dims: dict[str, list[str]]
    measure: list[float]

    def __len__(self) -> int:
        return len(self.ids)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workspace(root: Path, records: int) -> Workspace:
    people = max(100, round(records / ED_ROWS_PER_PERSON))
    data = root / "data"
    files = generate(data, people=people)
    listen = f"127.0.0.1:{free_port()}"
    pki = root / "pki"
    layout = init_dev_pki(pki, listen=listen)
    configs = write_agent_configs(pki, data, address=listen)
    return Workspace(
        root=root,
        layout=layout,
        listen=listen,
        agent_config=configs["health"],
        ed_visits=files.ed_visits,
        ed_rows=files.ed_rows,
    )


def _age_band(born: date, on: date) -> str:
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    low = min(age // 10 * 10, 80)
    return f"{low}+" if low == 80 else f"{low}-{low + 9}"


def load_bare_records(ed_visits: Path) -> BareRecords:
    """The export's rows as id, day, four text dims and one measure; unparseable rows skipped."""
    ids: list[bytes] = []
    days: list[int] = []
    dims: dict[str, list[str]] = {"age_band": [], "sex": [], "district": [], "presentation": []}
    measure: list[float] = []
    with ed_visits.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            try:
                arrived = datetime.strptime(row["arrival_time"], ED_TIME_FORMAT)
                left = datetime.strptime(row["departure_time"], ED_TIME_FORMAT)
                born = datetime.strptime(row["date_of_birth"], ED_DOB_FORMAT).date()
            except (ValueError, KeyError):
                continue
            ids.append(row["patient_national_id"].strip().upper().encode())
            days.append((arrived.date() - _EPOCH).days)
            dims["age_band"].append(_age_band(born, arrived.date()))
            dims["sex"].append(row["sex"] or "X")
            dims["district"].append(row["home_postcode"].split(" ")[0][:8])
            dims["presentation"].append(row["triage_code"][:16])
            measure.append((left - arrived).total_seconds() / 3600)
    return BareRecords(ids=ids, event_days=days, dims=dims, measure=measure)
