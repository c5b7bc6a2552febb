"""Fixtures for the end-to-end tests; the harness itself is in e2e_harness.py."""

from e2e_harness import pki, running

__all__ = ["pki", "running"]
