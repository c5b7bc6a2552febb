"""data.auditors (policies/auditors/data.yaml): which agencies' decisions each agency's auditors
see. Optional, schema-checked, and its agencies must be consortium members; each problem names
file, line and data path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from policy_testkit import copy_bundle

from gateway.policy import check_bundle


def check(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    return check_bundle(root, out), out.getvalue()


def _write_auditors(root: Path, text: str) -> None:
    (root / "auditors" / "data.yaml").write_text(text)


def test_a_bundle_without_auditor_data_passes(tmp_path: Path) -> None:
    """The file is optional: without it every auditor sees their own agency only."""
    root = copy_bundle(tmp_path)
    (root / "auditors" / "data.yaml").unlink()
    code, text = check(root)
    assert code == 0, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "health:\n  sees: [metro-police, tax-office]\n",
            "auditors/data.yaml:2: data.auditors.health.sees[1]: 'tax-office' is not an agency in data.agencies",
            id="unknown-seen-agency",
        ),
        pytest.param(
            "oversight:\n  sees: all\ncustoms:\n  sees: all\n",
            "auditors/data.yaml:3: data.auditors.customs: 'customs' is not an agency in data.agencies",
            id="unknown-auditing-agency",
        ),
        pytest.param(
            "health:\n  sees: everything\n",
            "auditors/data.yaml:2: data.auditors.health.sees: must be 'all' or a list of unique agency ids",
            id="sees-not-all-or-list",
        ),
        pytest.param(
            "health:\n  see: all\n",
            "auditors/data.yaml:1: data.auditors.health: unknown key 'see'",
            id="typo",
        ),
        pytest.param(
            "health:\n  sees: [metro-police, metro-police]\n",
            "auditors/data.yaml:2: data.auditors.health.sees: must be 'all' or a list of unique agency ids",
            id="duplicate",
        ),
    ],
)
def test_bad_auditor_data_fails_naming_file_line_and_path(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake in data.auditors fails the check with file, line and data path."""
    root = copy_bundle(tmp_path)
    _write_auditors(root, text)
    code, out = check(root)
    assert code == 1
    assert expected in out, out
