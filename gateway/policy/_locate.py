"""Where the shipped policy bundle is: inside the wheel, or ../policies in a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent.parent


def shipped_bundle_dir() -> Path:
    bundled = _PACKAGE / "_bundled_policies"
    return bundled if bundled.is_dir() else _PACKAGE.parent / "policies"
