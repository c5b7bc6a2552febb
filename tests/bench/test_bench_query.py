"""The query benchmark end to end on a small store: a real gateway answers over gRPC beside the
bare SQL, and the JSON says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_query_command_times_the_gateway_beside_the_bare_group_by() -> None:
    """`bench/run.py query --json` on 3,000 SQLite records reports, per question and index profile,
    every timed run of the bare SQL and of the Aggregate call, their p50s and ratio, and the
    target verdict of the two-dimension question."""
    done = subprocess.run(
        [
            sys.executable,
            "bench/run.py",
            "query",
            "--records",
            "3000",
            "--backends",
            "sqlite",
            "--profiles",
            "ingest,query",
            "--repeat",
            "2",
            "--json",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert (result["records"], result["repeat"], result["target_ratio"]) == (3000, 2, 1.3)
    rows = result["rows"]
    assert [(r["indexes"], r["question"]) for r in rows] == [
        ("ingest", "2dim"),
        ("ingest", "link"),
        ("query", "2dim"),
        ("query", "link"),
    ]
    for row in rows:
        assert row["backend"] == "sqlite" and row["records"] == 3000
        assert len(row["bare_s"]) == len(row["gateway_s"]) == 2
        assert all(t > 0 for t in row["bare_s"] + row["gateway_s"])
        assert row["ratio_p50"] == row["gateway_p50_s"] / row["bare_p50_s"]
        assert row["meets_target"] == (row["ratio_p50"] <= 1.3)
    assert result["meets_target"] == all(r["meets_target"] for r in rows if r["question"] == "2dim")


def test_the_query_command_refuses_an_unknown_backend() -> None:
    """An unknown backend is a usage error naming the flag, before anything is loaded."""
    done = subprocess.run(
        [sys.executable, "bench/run.py", "query", "--backends", "oracle"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--backends" in done.stderr
