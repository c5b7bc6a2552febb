"""Test-wide settings: hypothesis keeps no example database in the repository. And a gateway with
its plaintext health listener, which the gateway's and the deploy tests both start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from gateway.server import Gateway

settings.register_profile("datashare", database=None, deadline=None)
settings.load_profile("datashare")


@pytest.fixture
def health_listening_gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A started gateway on a fresh development PKI with [gateway] health_listen on a free loopback
    port (set from the environment, as a container would); stopped after the test."""
    from gateway._settings import GatewaySettings
    from gateway.pki import init_dev_pki
    from gateway.server import build_gateway

    layout = init_dev_pki(tmp_path / "health-pki", listen="127.0.0.1:0")
    environ = {"DATASHARE_GATEWAY_GATEWAY_HEALTH_LISTEN": "127.0.0.1:0"}
    gateway = build_gateway(GatewaySettings.from_file(layout.gateway_config, environ=environ))
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop(grace=0)
