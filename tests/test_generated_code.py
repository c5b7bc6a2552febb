"""The generated protobuf modules match proto/ exactly."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_generated_code_is_fresh() -> None:
    """Regenerating from proto/ with the pinned generator changes nothing in gateway/_pb or agents/_pb."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "proto" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_agent_package_never_imports_gateway() -> None:
    """No module of the agent deployable imports the gateway package (the .proto is the only contract)."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "agents").rglob("*.py")
        if any(
            line.lstrip().startswith(("import gateway", "from gateway"))
            for line in path.read_text().splitlines()
        )
    ]
    assert offenders == []
