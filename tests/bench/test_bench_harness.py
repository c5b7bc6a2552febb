"""The benchmark harness: child processes measured by the kernel, bare batches streamed from the
export, the ingest and indexes commands end to end on a small export, and the policy command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._child import run_child
from bench._indexes import run_indexes
from bench._workspace import prepare_bare_batches, read_bare_batches
from gateway.demo import generate
from gateway.policy import shipped_bundle_dir

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_child_reports_its_own_cpu_and_peak_rss(tmp_path: Path) -> None:
    """A child that holds 150 MB and spins for 0.3 s reports at least that RSS and CPU time."""
    code = (
        "import time\n"
        "block = bytearray(150 * 1024 * 1024)\n"
        "end = time.process_time() + 0.3\n"
        "while time.process_time() < end: pass\n"
        "print(len(block))\n"
    )
    done = run_child([sys.executable, "-c", code], cwd=tmp_path, timeout_s=60)
    assert done.returncode == 0
    assert done.stdout.strip() == str(150 * 1024 * 1024)
    assert done.peak_rss_kb >= 150 * 1024
    assert done.cpu_s >= 0.3


def test_a_child_past_its_timeout_is_killed(tmp_path: Path) -> None:
    """A child that outlives its timeout is killed and reported as a TimeoutError."""
    with pytest.raises(TimeoutError):
        run_child([sys.executable, "-c", "import time; time.sleep(30)"], cwd=tmp_path, timeout_s=0.5)


def test_bare_batches_hold_every_parsable_row_in_full_batches(tmp_path: Path) -> None:
    """Every row except the planted unparsable ones comes back once, in batches of the size asked
    for (the last may be shorter), with every column as long as the ids."""
    files = generate(tmp_path / "data", people=150)
    out = tmp_path / "bare.pickle"
    written = prepare_bare_batches(files.ed_visits, out, 40)
    batches = list(read_bare_batches(out))
    sizes = [len(ids) for ids, _, _, _ in batches]
    assert sum(sizes) == written
    assert 0 < files.ed_rows - written <= 3  # the planted dirty rows that cannot be parsed
    assert all(size == 40 for size in sizes[:-1]) and 0 < sizes[-1] <= 40
    for ids, days, dims, measure in batches:
        assert {len(days), len(measure), *(len(v) for v in dims.values())} == {len(ids)}


def test_the_indexes_command_measures_both_profiles(tmp_path: Path) -> None:
    """run_indexes on SQLite gives a positive ingest rate and query times for each profile."""
    result = run_indexes(2000, ["sqlite"], ["ingest", "query"])
    rows = result["rows"]
    assert isinstance(rows, list)
    assert [r["indexes"] for r in rows] == ["ingest", "query"]
    for row in rows:
        assert row["records"] == 2000
        assert row["ingest_records_per_s"] > 0
        assert row["two_dim_query_s"] > 0 and row["link_query_s"] > 0


@pytest.mark.slow
def test_the_ingest_command_runs_both_paths_end_to_end() -> None:
    """`bench/run.py ingest --json` on a small export reports the bare path and the real push with
    the same record count, a ratio, each side's CPU seconds and the agent's peak RSS."""
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "ingest",
            "--records",
            "600",
            "--backends",
            "sqlite",
            "--repeat",
            "1",
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    bare, push = result["rows"]
    assert (bare["path"], push["path"]) == ("bare", "agent push")
    assert push["indexes"] == "ingest"
    # the bare path skips only rows whose dates cannot be parsed; the agent also rejects the few
    # planted out-of-domain rows, so it stores a handful fewer, never more
    assert bare["records"] - 5 <= push["records"] <= bare["records"]
    assert push["records"] > 500
    assert push["ratio_real_over_bare"] == pytest.approx(push["records_per_s"] / bare["records_per_s"])
    for row in (bare, push):
        assert row["client_cpu_s"] > 0 and row["server_cpu_s"] > 0
        assert row["client_peak_rss_mb"] > 10


def test_the_policy_command_times_each_decision_beside_the_bare_engine() -> None:
    """`bench/run.py policy --json` with 3 agreements reports, per decision kind, the gateway's
    call and the bare engine call (p50 <= p99), their ratio, the trivial-rule floor and the target."""
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "policy",
            "--agreements",
            "3",
            "--decisions",
            "100",
            "--repeat",
            "1",
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(done.stdout)
    assert (result["agreements"], result["decisions"], result["rounds"]) == (3, 100, 1)
    assert result["target"] == {"p50_us": 200.0, "p99_us": 1000.0}
    rows = {row["decision"]: row for row in result["rows"]}
    assert list(rows) == ["query allowed", "query denied", "ingest", "listing"]
    assert [rows[name]["outcome"] for name in ("query allowed", "query denied", "ingest")] == [
        "allow",
        "deny",
        "allow",
    ]
    assert rows["listing"]["outcome"].startswith("listed:")
    for row in rows.values():
        for side in ("gateway", "bare"):
            assert 0 < row[side]["p50_us"] <= row[side]["p99_us"] <= row[side]["max_us"]
        assert row["ratio_p50"] == pytest.approx(row["gateway"]["p50_us"] / row["bare"]["p50_us"])
    assert 0 < result["trivial"]["p50_us"] < rows["ingest"]["bare"]["p50_us"]
    assert isinstance(result["query_meets_target"], bool)


def test_the_policy_command_refuses_a_bundle_that_would_not_load(tmp_path: Path) -> None:
    """A bundle with a Rego syntax error ends the command with exit 1 and the file and line,
    not a traceback."""
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    (bundle / "datashare" / "query.rego").write_text("package datashare.query\n\nallow if {\n")
    done = subprocess.run(
        [sys.executable, "bench/run.py", "policy", "--decisions", "100", "--bundle", str(bundle)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert re.search(r"datashare/query\.rego:\d+", done.stderr), done.stderr
