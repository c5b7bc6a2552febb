"""README command one: the demo runs the whole path and exits 0."""

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end_and_shows_allowed_withheld_and_refused(tmp_path: Path) -> None:
    """`gateway demo DIR` pushes both agencies, answers with withheld cells, refuses with reasons, verifies the log."""
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from gateway.cli import main; raise SystemExit(main())",
            "demo",
            str(tmp_path / "d"),
            "--people",
            "3000",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "withheld" in out
    assert out.count("refused (PERMISSION_DENIED)") == 2
    assert "Chain verified" in out
    assert "stored 0" not in out
