"""Fixtures for the demo tests: the synthetic exports (made once) and the catalogue contracts."""

from __future__ import annotations

import pytest

from agents import Contract
from agents._pb import common_pb2
from gateway.catalogue import Catalogue
from gateway.demo import SyntheticFiles, generate
from gateway.policy import load_bundle, shipped_bundle_dir


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticFiles:
    return generate(tmp_path_factory.mktemp("synthetic"), seed=7, people=3000)


@pytest.fixture(scope="session")
def contracts() -> dict[str, Contract]:
    """The shipped catalogue's contracts, as they reach an agent: serialised by the gateway."""
    catalogue = Catalogue.from_data(load_bundle(shipped_bundle_dir()).data)
    return {
        name: Contract.from_proto(common_pb2.DatasetContract.FromString(ds.to_proto().SerializeToString()))
        for name, ds in catalogue.datasets.items()
    }
