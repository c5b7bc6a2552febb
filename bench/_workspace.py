"""One benchmark workspace: synthetic ED-visits export, development PKI and agent configs."""

from __future__ import annotations

import csv
import pickle
import socket
from collections.abc import Iterator
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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_workspace(root: Path, records: int, *, batch_size: int = 1000) -> Workspace:
    people = max(100, round(records / ED_ROWS_PER_PERSON))
    data = root / "data"
    files = generate(data, people=people)
    listen = f"127.0.0.1:{free_port()}"
    pki = root / "pki"
    layout = init_dev_pki(pki, listen=listen)
    configs = write_agent_configs(pki, data, address=listen, batch_size=batch_size)
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


BareBatch = tuple[list[bytes], list[int], dict[str, list[str]], list[float]]
"""ids, event days, the four text dimensions by name, the measure: one batch's columns."""


def prepare_bare_batches(ed_visits: Path, out: Path, batch: int) -> int:
    """The export's rows as bare-pipeline batches (id, day, four text dims, one measure), one
    pickle frame per ``batch`` rows, streamed: parsing the CSV is not part of what the bare
    pipeline times, and no more than one batch is ever in memory. Unparseable rows are skipped;
    returns how many rows were written."""
    written = 0
    with ed_visits.open(newline="", encoding="utf-8") as handle, out.open("wb") as sink:
        for columns in _bare_batches(csv.DictReader(handle), batch):
            pickle.dump(columns, sink, protocol=pickle.HIGHEST_PROTOCOL)
            written += len(columns[0])
    return written


def read_bare_batches(path: Path) -> Iterator[BareBatch]:
    with path.open("rb") as source:
        while True:
            try:
                yield pickle.load(source)  # a file this benchmark wrote itself
            except EOFError:
                return


def _bare_batches(rows: Iterator[dict[str, str]], batch: int) -> Iterator[BareBatch]:
    columns = _empty()
    for row in rows:
        try:
            arrived = datetime.strptime(row["arrival_time"], ED_TIME_FORMAT)
            left = datetime.strptime(row["departure_time"], ED_TIME_FORMAT)
            born = datetime.strptime(row["date_of_birth"], ED_DOB_FORMAT).date()
        except (ValueError, KeyError):
            continue
        ids, days, dims, measure = columns
        ids.append(row["patient_national_id"].strip().upper().encode())
        days.append((arrived.date() - _EPOCH).days)
        dims["age_band"].append(_age_band(born, arrived.date()))
        dims["sex"].append(row["sex"] or "X")
        dims["district"].append(row["home_postcode"].split(" ")[0][:8])
        dims["presentation"].append(row["triage_code"][:16])
        measure.append((left - arrived).total_seconds() / 3600)
        if len(ids) == batch:
            yield columns
            columns = _empty()
    if columns[0]:
        yield columns


def _empty() -> BareBatch:
    return [], [], {"age_band": [], "sex": [], "district": [], "presentation": []}, []
