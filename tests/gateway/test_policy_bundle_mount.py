"""A policy bundle mounted from a Kubernetes ConfigMap (deploy/k8s) loads as the same bundle, and
an update kubelet makes there is seen by the reloader.

kubelet writes a ConfigMap volume as a hidden timestamped folder holding the files, a `..data`
symlink to it, and one symlink per top-level name through `..data`; an update writes a new
timestamped folder and swaps `..data`. The layout is made here exactly so, with real files."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway.policy._bundle import load_bundle, load_checked_bundle
from gateway.policy._locate import shipped_bundle_dir
from gateway.policy._reload import bundle_digest


def _configmap_volume(mount: Path, source: Path, stamp: str) -> None:
    """Write (or update) `mount` as kubelet writes a ConfigMap volume holding `source`'s files."""
    mount.mkdir(exist_ok=True)
    shutil.copytree(source, mount / f"..{stamp}")
    link = mount / "..data_tmp"
    link.symlink_to(f"..{stamp}")
    link.rename(mount / "..data")  # the atomic swap
    for top in (mount / "..data").iterdir():
        entry = mount / top.name
        if not entry.is_symlink():
            entry.symlink_to(Path("..data") / top.name)


def test_configmap_mounted_bundle_is_the_same_bundle(tmp_path: Path) -> None:
    """The shipped bundle behind kubelet's symlinks loads with the same modules, data and revision."""
    _configmap_volume(tmp_path / "policies", shipped_bundle_dir(), "2026_12_06_10_00_00.000000001")
    mounted = load_checked_bundle(tmp_path / "policies")
    plain = load_bundle(shipped_bundle_dir())
    assert mounted.revision == plain.revision
    assert set(mounted.modules) == set(plain.modules)
    assert mounted.data == plain.data


def test_configmap_update_changes_the_reload_digest(tmp_path: Path) -> None:
    """kubelet's swap of `..data` to an edited copy changes the digest the reloader polls, and the
    new bundle loads with the edit."""
    edited = tmp_path / "edited"
    shutil.copytree(shipped_bundle_dir(), edited)
    agreements = edited / "agreements" / "data.yaml"
    agreements.write_text(agreements.read_text() + "\n# reviewed edit\n")
    mount = tmp_path / "policies"
    _configmap_volume(mount, shipped_bundle_dir(), "2026_12_06_10_00_00.000000001")
    before = bundle_digest(mount)
    _configmap_volume(mount, edited, "2026_12_06_11_00_00.000000002")
    assert bundle_digest(mount) != before
    assert load_bundle(mount).revision == load_bundle(edited).revision


def test_symlink_loop_in_a_bundle_ends(tmp_path: Path) -> None:
    """A folder that links back to the bundle is walked once, not forever."""
    bundle = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir(), bundle)
    (bundle / "datashare" / "loop").symlink_to("..")
    assert load_bundle(bundle).revision == load_bundle(shipped_bundle_dir()).revision
