"""deploy/gateway: the gateway's and OPA's systemd units, the sysusers file and the example config
the unit runs with: accepted by systemd, hardened, and loadable by the gateway's own loaders."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from agent_sandbox import FILTER_INEFFECTIVE_EXIT, run_gateway_denying_write_execute, seccomp_filter_supported
from deploy_files import (
    GATEWAY_CREDENTIALS_DIR,
    GATEWAY_EXAMPLE_CONFIG,
    GATEWAY_SYSUSERS,
    GATEWAY_UNIT,
    OPA_UNIT,
    exposure,
    systemd_verify,
    uncommented_settings,
    unit_settings,
    with_existing_binary,
)
from gateway_site import materialise

from gateway._settings import GatewaySettings, load_gateway_keys
from gateway.pki import PkiLayout, init_dev_pki

EXPOSURE_CEILING = 2.0  # of 10; systemd-analyze calls up to 3.9 "OK"; the units measure 1.2 and 1.1
UNITS = [GATEWAY_UNIT, OPA_UNIT]

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> PkiLayout:
    return init_dev_pki(tmp_path_factory.mktemp("pki"))


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_passes_systemd_analyze_verify(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a single warning (a misspelt key only warns)."""
    proc = systemd_verify(with_existing_binary(unit, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout + proc.stderr == ""


@needs_systemd_analyze
@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_exposure_is_low(unit: Path, tmp_path: Path) -> None:
    """`systemd-analyze security` rates the unit's exposure at most EXPOSURE_CEILING (of 10)."""
    level, proc = exposure(with_existing_binary(unit, tmp_path), EXPOSURE_CEILING)
    assert level is not None, proc.stdout + proc.stderr
    assert level <= EXPOSURE_CEILING
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_every_setting_says_why(unit: Path) -> None:
    """Each setting of the [Service] section is preceded by a comment (directly or in its group)."""
    assert uncommented_settings(unit) == []


def test_unit_serves_with_the_system_config() -> None:
    """ExecStart is `gateway serve --config /etc/datashare/gateway.toml`; reload sends SIGHUP."""
    settings = unit_settings(GATEWAY_UNIT)
    (exec_start,) = settings["ExecStart"]
    assert Path(shlex.split(exec_start)[0]).name == "gateway"
    assert shlex.split(exec_start)[1:] == ["serve", "--config", "/etc/datashare/gateway.toml"]
    assert settings["ExecReload"] == ["kill -HUP $MAINPID"]


def test_unit_does_not_restart_on_a_configuration_error(tmp_path: Path) -> None:
    """The exit code of `gateway serve` on a config error is the one code the unit never restarts on."""
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--config", str(tmp_path / "missing.toml")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode != 0
    settings = unit_settings(GATEWAY_UNIT)
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == [str(proc.returncode)]


def test_example_config_loads_with_the_gateways_own_loaders(layout: PkiLayout, tmp_path: Path) -> None:
    """gateway.example.toml, with real files at the paths it names, passes the settings loader and
    the key loader (every key of the right kind, private ones owner-only)."""
    config = materialise(GATEWAY_EXAMPLE_CONFIG.read_text(encoding="utf-8"), tmp_path, layout)
    settings = GatewaySettings.from_file(config, environ={})
    keys = load_gateway_keys(settings)
    assert settings.store_url.startswith("postgresql+psycopg://")
    assert set(keys.agency_keys) == {"metro-police", "health"}
    assert settings.health_listen is not None and settings.health_listen.startswith("127.0.0.1:")


def test_example_config_reads_each_private_key_from_a_unit_credential() -> None:
    """Every private key the config names is /run/credentials/datashare-gateway.service/<name>,
    and the unit loads exactly those credentials, from root-only files under /etc/datashare/keys."""
    doc = tomllib.loads(GATEWAY_EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    private = [doc["tls"]["key"], *doc["keys"].values()]
    assert {Path(p).parent for p in private} == {GATEWAY_CREDENTIALS_DIR}
    loaded = dict(value.split(":", 1) for value in unit_settings(GATEWAY_UNIT)["LoadCredential"])
    assert set(loaded) == {Path(p).name for p in private}
    assert {Path(source).parent for source in loaded.values()} == {Path("/etc/datashare/keys")}


def test_example_config_keeps_sqlite_in_the_units_state_directory() -> None:
    """The one place the unit lets the gateway write is /var/lib/<StateDirectory=>, where the config's
    comment puts a SQLite store."""
    (state_directory,) = unit_settings(GATEWAY_UNIT)["StateDirectory"]
    assert f"sqlite:////var/lib/{state_directory}/" in GATEWAY_EXAMPLE_CONFIG.read_text(encoding="utf-8")


def test_opa_unit_listens_where_the_example_config_points() -> None:
    """The OPA unit serves on loopback at the example config's opa_url, and accepts no other address."""
    settings = unit_settings(OPA_UNIT)
    (exec_start,) = settings["ExecStart"]
    opa_url = tomllib.loads(GATEWAY_EXAMPLE_CONFIG.read_text(encoding="utf-8"))["policy"]["opa_url"]
    assert f"--addr={opa_url.removeprefix('http://')}" in shlex.split(exec_start)
    assert opa_url.startswith("http://127.0.0.1:")
    assert settings["IPAddressDeny"] == ["any"]
    assert settings["IPAddressAllow"] == ["localhost"]


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="systemd-sysusers is not installed")
def test_sysusers_file_creates_the_units_user(tmp_path: Path) -> None:
    """systemd-sysusers, run on an empty root, creates the User= and Group= the unit runs as."""
    (tmp_path / "etc").mkdir()
    proc = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(GATEWAY_SYSUSERS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    settings = unit_settings(GATEWAY_UNIT)
    users = [line.split(":")[0] for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    groups = [line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()]
    assert settings["User"][0] in users
    assert settings["Group"][0] in groups


@pytest.mark.slow
@pytest.mark.skipif(
    not seccomp_filter_supported(), reason="the MemoryDenyWriteExecute filter is written for x86-64 Linux"
)
def test_gateway_demo_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """`gateway demo` (gateway with mTLS, regorus, SQLite, two agent processes, queries, audit
    verification) exits 0 with writable-and-executable memory forbidden, as the unit forbids it."""
    assert unit_settings(GATEWAY_UNIT)["MemoryDenyWriteExecute"] == ["yes"]
    proc = run_gateway_denying_write_execute(["demo", str(tmp_path / "demo")])
    assert proc.returncode != FILTER_INEFFECTIVE_EXIT, proc.stderr[-2000:]
    assert proc.returncode == 0, proc.stderr[-2000:]
