"""``ingest``: bare pipeline vs the real agent push, per backend, medians of --repeat runs."""

from __future__ import annotations

import json
import statistics
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from bench._baseline import BATCH, run_bare
from bench._real import run_agent_push
from bench._workspace import load_bare_records, make_workspace

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
BARE = "bare"
BARE_INDEXED = "bare+indexes"
AGENT = "agent push"


@dataclass(frozen=True)
class Row:
    backend: str
    path: str
    records: int
    median_s: float
    records_per_s: float
    ratio_real_over_bare: float | None
    ratio_real_over_bare_indexed: float | None = None
    agent_peak_rss_mb: float | None = None


def run_ingest(records: int, backends: list[str], repeat: int, *, pg_url: str = PG_URL) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        ws = make_workspace(Path(tmp), records)
        bare_records = load_bare_records(ws.ed_visits)
        rows: list[Row] = []
        for backend in backends:
            bare_s = [run_bare(bare_records, backend, ws.root, pg_url, indexed=False) for _ in range(repeat)]
            indexed_s = [
                run_bare(bare_records, backend, ws.root, pg_url, indexed=True) for _ in range(repeat)
            ]
            agent = [run_agent_push(ws, backend, pg_url, run) for run in range(repeat)]
            bare_rate = len(bare_records) / statistics.median(bare_s)
            indexed_rate = len(bare_records) / statistics.median(indexed_s)
            sent = agent[0].sent
            agent_s = statistics.median(a.seconds for a in agent)
            agent_rate = sent / agent_s
            rss = [a.peak_rss_kb for a in agent if a.peak_rss_kb is not None]
            rows += [
                Row(backend, BARE, len(bare_records), statistics.median(bare_s), bare_rate, None),
                Row(
                    backend,
                    BARE_INDEXED,
                    len(bare_records),
                    statistics.median(indexed_s),
                    indexed_rate,
                    None,
                ),
                Row(
                    backend,
                    AGENT,
                    sent,
                    agent_s,
                    agent_rate,
                    agent_rate / bare_rate,
                    agent_rate / indexed_rate,
                    max(rss) / 1024 if rss else None,
                ),
            ]
        return {
            "requested_records": records,
            "csv_rows": ws.ed_rows,
            "repeat": repeat,
            "batch_size": BATCH,
            "notes": [
                (
                    "bare: HMAC-SHA256 (pre-keyed .copy()) + protobuf RecordBatch + AES-256-GCM + gRPC unary "
                    "on an INSECURE loopback port (no TLS) + bulk insert (SQLite executemany, WAL, one "
                    "transaction per batch; PostgreSQL COPY); no policy, signature, HPKE or checks; CSV "
                    "parsing not timed"
                ),
                "bare: table without indexes; bare+indexes: the real store's grouping indexes",
                (
                    "agent push: wall clock of `python -m agents push` as a child process (interpreter "
                    "start-up and CSV parsing included) into the real gateway in this process (mTLS, "
                    "policy, HPKE, Ed25519, audit), gateway log level warning; fresh database per run"
                ),
                "real/bare = agent records/s / bare (no indexes); real/bare+idx = the same / bare+indexes",
            ],
            "rows": [asdict(row) for row in rows],
        }


def format_table(result: dict[str, object]) -> str:
    header = f"{'backend':<9} {'path':<13} {'records':>8} {'median s':>9} {'records/s':>10} {'real/bare':>9}"
    header += f" {'real/bare+idx':>13} {'agent RSS MB':>12}"
    lines = [header, "-" * len(header)]
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        ratio = "" if row["ratio_real_over_bare"] is None else f"{row['ratio_real_over_bare']:.3f}"
        ratio_idx = row["ratio_real_over_bare_indexed"]
        ratio_idx_text = "" if ratio_idx is None else f"{ratio_idx:.3f}"
        rss = "" if row["agent_peak_rss_mb"] is None else f"{row['agent_peak_rss_mb']:.0f}"
        lines.append(
            f"{row['backend']:<9} {row['path']:<13} {row['records']:>8} {row['median_s']:>9.3f} "
            f"{row['records_per_s']:>10,.0f} {ratio:>9} {ratio_idx_text:>13} {rss:>12}"
        )
    lines.append(
        f"(requested {result['requested_records']}, CSV rows {result['csv_rows']}, "
        f"medians of {result['repeat']}, batches of {result['batch_size']})"
    )
    notes = result["notes"]
    assert isinstance(notes, list)
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def print_result(result: dict[str, object], *, as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else format_table(result))
