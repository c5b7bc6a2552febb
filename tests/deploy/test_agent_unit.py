"""deploy/agent/datashare-agent.service: a unit systemd accepts, hardened, and restarting only when
a restart can help."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_files import (
    SYSUSERS,
    UNIT,
    exposure,
    systemd_verify,
    uncommented_settings,
    unit_settings,
    with_existing_binary,
)

from agents.errors import ConfigError, PermanentPushError

EXPOSURE_CEILING = 2.0  # of 10; systemd-analyze calls up to 3.9 "OK", and the unit measures 1.2

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _unit_with_existing_binary(folder: Path) -> Path:
    """A copy of the unit whose ExecStart binary exists here (the agent's, else this Python)."""
    binary = Path(sys.executable).with_name("agent")
    return with_existing_binary(UNIT, folder, binary if binary.exists() else None)


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning (an unknown or misspelt key
    only warns, so any output fails the test)."""
    proc = systemd_verify(_unit_with_existing_binary(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""


@needs_systemd_analyze
def test_unit_exposure_is_low(tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit's exposure at most EXPOSURE_CEILING (of 10)."""
    level, proc = exposure(_unit_with_existing_binary(tmp_path), EXPOSURE_CEILING)
    assert level is not None, proc.stdout + proc.stderr
    assert level <= EXPOSURE_CEILING
    assert proc.returncode == 0, proc.stderr


def test_unit_runs_the_service_mode_with_the_system_config() -> None:
    """ExecStart is `agent run --config /etc/datashare/agent.toml`."""
    (exec_start,) = unit_settings()["ExecStart"]
    assert shlex.split(exec_start)[1:] == ["run", "--config", "/etc/datashare/agent.toml"]
    assert Path(shlex.split(exec_start)[0]).name == "agent"


def test_unit_does_not_restart_on_config_errors_or_permanent_refusals() -> None:
    """Restart=on-failure, except for the agent's config-error and gateway-refused exit codes."""
    settings = unit_settings()
    assert settings["Restart"] == ["on-failure"]
    (prevent,) = settings["RestartPreventExitStatus"]
    assert {int(code) for code in prevent.split()} == {ConfigError.exit_code, PermanentPushError.exit_code}


def test_every_hardening_line_says_why() -> None:
    """Each setting of the [Service] section is preceded by a comment (directly or in its group)."""
    assert uncommented_settings(UNIT) == []


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_file_creates_the_units_user(tmp_path: Path) -> None:
    """systemd-sysusers, run on an empty root, creates the User= and Group= the unit runs as."""
    (tmp_path / "etc").mkdir()
    proc = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    settings = unit_settings()
    users = [line.split(":")[0] for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    groups = [line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()]
    assert settings["User"][0] in users
    assert settings["Group"][0] in groups
