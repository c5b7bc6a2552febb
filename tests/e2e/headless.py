"""A real headless Chromium (Debian's /usr/bin/chromium; `.ci/run` installs it) for tests that
must see a page as a browser renders it. Everything is local: a file:// URL, a fresh profile per
call, and the flags that stop Chromium calling home (updates, sync, QUIC, background fetches)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
TIMEOUT_S = 120


def chromium() -> str:
    """The browser's path; a missing browser fails the test (it is part of the test setup)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail("chromium is not installed: apt-get install -y chromium (bash .ci/run does it)")
    return found


def _run(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    command = [chromium(), *_FLAGS, f"--user-data-dir={profile}", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=False)


def screenshot(page: Path, png: Path, profile: Path, *, width: int = 1200, height: int = 4000) -> None:
    """Render ``page`` in a width x height window and save it as ``png``."""
    done = _run(page, profile, f"--window-size={width},{height}", f"--screenshot={png}")
    assert png.exists(), done.stderr.decode(errors="replace")[-2000:]


def dump_dom(page: Path, profile: Path) -> str:
    """The page's DOM after the browser has parsed (and would have run) it, serialised."""
    done = _run(page, profile, "--dump-dom")
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    return done.stdout.decode()
