"""Helpers for the policy tests: copies of the shipped bundle to edit, and decision inputs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gateway.policy import shipped_bundle_dir

NOW = "2026-11-22T10:00:00Z"
AGREEMENT = "ag-2026-001"

HEALTH_ANALYST = {
    "agency": "health",
    "role": "analyst",
    "name": "ann",
    "id": "spiffe://consortium.test/agency/health/analyst/ann",
}
POLICE_ANALYST = {
    "agency": "metro-police",
    "role": "analyst",
    "name": "bob",
    "id": "spiffe://consortium.test/agency/metro-police/analyst/bob",
}
POLICE_LINK = {
    "dataset": "police_incidents",
    "days_before": 30,
    "days_after": 0,
    "filters": ["incident_type"],
}


def copy_bundle(tmp_path: Path) -> Path:
    """A private copy of the shipped bundle, safe to edit."""
    root = tmp_path / "policies"
    shutil.copytree(shipped_bundle_dir(), root)
    return root


def edit_yaml(path: Path, change: Callable[[Any], None]) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def edit_agreement(root: Path, **fields: Any) -> None:
    """Set fields of ag-2026-001 in the bundle at root."""

    def change(agreements: dict[str, Any]) -> None:
        agreements[AGREEMENT].update(fields)

    edit_yaml(root / "agreements" / "data.yaml", change)


def query_request(**changes: Any) -> dict[str, Any]:
    """A query the shipped agreement allows to a health analyst, with some fields replaced."""
    request: dict[str, Any] = {
        "agreement_id": AGREEMENT,
        "purpose": "overdose-prevention",
        "dataset": "ed_visits",
        "measures": ["subjects", "sum:length_of_stay_hours"],
        "group_by": ["district", "month"],
        "filters": ["presentation"],
        "months": {"first": "2026-01", "last": "2026-06"},
        "link": None,
    }
    request.update(changes)
    return request


def query_input(principal: dict[str, str] = HEALTH_ANALYST, now: str = NOW, **changes: Any) -> dict[str, Any]:
    return {"principal": principal, "action": "query", "request": query_request(**changes), "now": now}


def listing_input(principal: dict[str, str]) -> dict[str, Any]:
    return {"principal": principal, "action": "list_datasets", "now": NOW}


def write_module(root: Path, rel: str, source: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path
