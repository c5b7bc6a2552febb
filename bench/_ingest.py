"""``ingest``: the bare pipeline vs the real agent push, per backend (and index profile), medians
of --repeat alternated runs, with each side's CPU seconds so the agent and the gateway can be
tuned apart.

Memory stays flat whatever --records: the export is generated streaming, the bare pipeline's
batches are pre-parsed into a file and read back one at a time, and each run writes to a fresh
database.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from agents._config import DEFAULT_BATCH_SIZE
from bench._bare_client import IN_FLIGHT
from bench._baseline import BareRun, run_bare
from bench._real import AgentRun, run_agent_push
from bench._workspace import make_workspace, prepare_bare_batches

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BATCH = DEFAULT_BATCH_SIZE  # the agent's default batch_size, used by both paths (bare and agent)
BARE = "bare"
AGENT = "agent push"


@dataclass(frozen=True)
class Row:
    backend: str
    path: str
    indexes: str  # the store's index profile ("none" for the bare table)
    records: int
    median_s: float
    records_per_s: float
    ratio_real_over_bare: float | None
    client_cpu_s: float  # the agent, or the bare client
    server_cpu_s: float  # the gateway, or the bare server (the database server not included)
    client_peak_rss_mb: float

    @property
    def client_us_per_record(self) -> float:
        return self.client_cpu_s / self.records * 1e6

    @property
    def server_us_per_record(self) -> float:
        return self.server_cpu_s / self.records * 1e6


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def run_ingest(
    records: int, backends: list[str], repeat: int, indexes: list[str], *, pg_url: str = PG_URL
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        ws = make_workspace(Path(tmp), records, batch_size=BATCH)
        bare_batches = ws.root / "bare-batches.pickle"
        bare_records = prepare_bare_batches(ws.ed_visits, bare_batches, BATCH)
        rows: list[Row] = []
        for backend in backends:
            # alternated, bare then each profile, round after round: a machine that slows down
            # or speeds up during the run moves both sides of the ratio alike
            bare: list[BareRun] = []
            runs: dict[str, list[AgentRun]] = {profile: [] for profile in indexes}
            for i in range(repeat):
                bare.append(run_bare(bare_batches, bare_records, backend, ws.root, pg_url))
                for profile in indexes:
                    runs[profile].append(
                        run_agent_push(ws, backend, pg_url, f"{backend}-{profile}-{i}", indexes=profile)
                    )
            bare_s = _median([b.seconds for b in bare])
            bare_rate = bare_records / bare_s
            rows.append(
                Row(
                    backend,
                    BARE,
                    "none",
                    bare_records,
                    bare_s,
                    bare_rate,
                    None,
                    _median([b.client_cpu_s for b in bare]),
                    _median([b.server_cpu_s for b in bare]),
                    max(b.client_peak_rss_kb for b in bare) / 1024,
                )
            )
            for profile in indexes:
                sent = runs[profile][0].sent
                agent_s = _median([r.seconds for r in runs[profile]])
                rows.append(
                    Row(
                        backend,
                        AGENT,
                        profile,
                        sent,
                        agent_s,
                        sent / agent_s,
                        sent / agent_s / bare_rate,
                        _median([r.agent_cpu_s for r in runs[profile]]),
                        _median([r.gateway_cpu_s for r in runs[profile]]),
                        max(r.peak_rss_kb for r in runs[profile]) / 1024,
                    )
                )
        return {
            "requested_records": records,
            "csv_rows": ws.ed_rows,
            "repeat": repeat,
            "batch_size": BATCH,
            "notes": NOTES,
            "rows": [
                {
                    **asdict(row),
                    "client_us_per_record": row.client_us_per_record,
                    "server_us_per_record": row.server_us_per_record,
                }
                for row in rows
            ],
        }


NOTES = [
    (
        "bare: HMAC-SHA256 (pre-keyed .copy()) + protobuf RecordBatch + AES-256-GCM + gRPC unary on an "
        f"INSECURE loopback port (no TLS), up to {IN_FLIGHT} calls in flight + bulk insert into a table "
        "without indexes, constraints or foreign key (SQLite executemany, WAL, synchronous=NORMAL, one "
        "transaction per batch; PostgreSQL binary COPY, as the store); no policy, signature, HPKE, audit "
        "or checks"
    ),
    (
        "bare runs in two processes like the real path: the client (HMAC, protobuf, AES-GCM, gRPC) is a "
        "child process reading pre-parsed batches (CSV parsing not timed; seconds = first batch to last "
        "acknowledgement), the server is this process"
    ),
    (
        "agent push: wall clock of `python -m agents push` as a child process (interpreter start-up and "
        "CSV parsing included) into the real gateway in this process (mTLS, policy, HPKE, Ed25519, "
        "every check, audit entry per batch), log level warning, a fresh database per run; indexes = "
        "the store's index profile"
    ),
    (
        f"both paths send batches of {BATCH:,} records, the agent's default batch_size (1,000 until "
        "issue 7 raised it: the gateway's per-batch work dominated at 1,000)"
    ),
    (
        "client = the agent or the bare client, server = the gateway or the bare server: CPU seconds "
        "(user + system) of each process; the PostgreSQL server's own CPU is in neither; RSS = the "
        "client's peak"
    ),
]


def format_table(result: dict[str, object]) -> str:
    header = (
        f"{'backend':<9} {'path':<11} {'indexes':<7} {'records':>8} {'median s':>9} {'records/s':>10} "
        f"{'real/bare':>9} {'client cpu s':>12} {'server cpu s':>12} {'cli µs/rec':>10} "
        f"{'srv µs/rec':>10} {'client RSS MB':>13}"
    )
    lines = [header, "-" * len(header)]
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        ratio = "" if row["ratio_real_over_bare"] is None else f"{row['ratio_real_over_bare']:.3f}"
        lines.append(
            f"{row['backend']:<9} {row['path']:<11} {row['indexes']:<7} {row['records']:>8} "
            f"{row['median_s']:>9.3f} {row['records_per_s']:>10,.0f} {ratio:>9} "
            f"{row['client_cpu_s']:>12.2f} {row['server_cpu_s']:>12.2f} "
            f"{row['client_us_per_record']:>10.2f} {row['server_us_per_record']:>10.2f} "
            f"{row['client_peak_rss_mb']:>13.0f}"
        )
    lines.append(
        f"(requested {result['requested_records']}, CSV rows {result['csv_rows']}, "
        f"medians of {result['repeat']} alternated runs, batches of {result['batch_size']})"
    )
    notes = result["notes"]
    assert isinstance(notes, list)
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def print_result(result: dict[str, object], *, as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else format_table(result))
