"""Fixtures for the policy tests: the shipped bundle and an embedded engine built from it."""

from __future__ import annotations

import pytest

from gateway.policy import Bundle, EmbeddedEngine, load_bundle, shipped_bundle_dir


@pytest.fixture(scope="session")
def shipped_bundle() -> Bundle:
    return load_bundle(shipped_bundle_dir())


@pytest.fixture(scope="session")
def engine(shipped_bundle: Bundle) -> EmbeddedEngine:
    return EmbeddedEngine.from_bundle(shipped_bundle)
