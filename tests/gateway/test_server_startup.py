"""The gateway refuses to start on a bad policy bundle rather than serve under it."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from gateway._settings import GatewaySettings
from gateway.errors import ConfigError
from gateway.pki import init_dev_pki
from gateway.policy._locate import shipped_bundle_dir
from gateway.server import build_gateway


def test_agreement_below_the_k_floor_stops_start_up(tmp_path: Path) -> None:
    """A bundle whose agreement sets k below 10 is a configuration error naming the agreement, not a running gateway."""
    layout = init_dev_pki(tmp_path / "pki")
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    agreements = bundle / "agreements" / "data.yaml"
    agreements.write_text(agreements.read_text().replace("  k: 10\n", "  k: 5\n"))
    settings = GatewaySettings.from_file(layout.gateway_config)
    settings = dataclasses.replace(settings, policy=dataclasses.replace(settings.policy, bundle=bundle))
    with pytest.raises(ConfigError) as err:
        build_gateway(settings)
    assert "ag-2026-001" in err.value.message
