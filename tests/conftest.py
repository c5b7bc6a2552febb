"""Test-wide settings, and a gateway with its plaintext health listener, which the gateway's and
the deploy tests both start.

Hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE`` (default ``datashare``):

- ``datashare``: no example database in the repository, no deadline (2 shared cores), fresh
  random examples each run;
- ``ci`` (what ``.ci/run`` uses): the same, derandomised, so a CI run is repeatable and the
  fuzzers (``-m fuzz``) together stay well under a minute;
- ``fuzz``: a long local hunt, 20x the examples, with failures kept in a database under the
  system temporary directory (never in the repository) so the next run replays them first:
  ``HYPOTHESIS_PROFILE=fuzz .venv/bin/python -m pytest -m fuzz --timeout=0`` (about 10 minutes).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase

if TYPE_CHECKING:
    from gateway.server import Gateway

settings.register_profile("datashare", database=None, deadline=None)
settings.register_profile("ci", settings.get_profile("datashare"), derandomize=True)
settings.register_profile(
    "fuzz",
    settings.get_profile("datashare"),
    max_examples=2_000,
    database=DirectoryBasedExampleDatabase(Path(tempfile.gettempdir()) / "datashare-hypothesis"),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "datashare"))


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
