"""Nothing lost, nothing doubled: the real agent and the real gateway, each killed with SIGKILL mid-push.

Both run as child processes (`python -m agents push`, `python -m gateway serve`) on a fresh dev
PKI and a SQLite store; the synthetic ED export has a few thousand records sent in small batches so
a push lasts long enough to be killed at several points. What the gateway ends up holding is
compared with what the agent's own mapper makes of the export: the same multiset of records.
"""

from __future__ import annotations

import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench._load_checks import Expected, RowKey, expected_records, stored_records
from gateway.demo import generate, write_agent_configs
from gateway.pki import init_dev_pki

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BATCH = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Agent:
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def poll(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def wait(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=120)
        return code, self.stdout.read_text(), self.stderr.read_text()


@dataclass
class Site:
    root: Path
    gateway_config: Path
    agent_config: Path
    db: Path
    port: int
    gateway: subprocess.Popen[bytes] | None = None
    agents: int = 0

    def start_gateway(self) -> None:
        with (self.root / "gateway.log").open("ab") as log:  # the child keeps its own copy
            self.gateway = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve", "--config", str(self.gateway_config)],
                cwd=REPO,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("the gateway did not start listening")

    def kill_gateway(self) -> None:
        assert self.gateway is not None
        self.gateway.send_signal(signal.SIGKILL)
        self.gateway.wait()

    def stop_gateway(self) -> None:
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.terminate()
            self.gateway.wait(timeout=30)

    def start_agent(self, *extra: str) -> Agent:
        self.agents += 1
        out, err = self.root / f"agent-{self.agents}.out", self.root / f"agent-{self.agents}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:  # the child keeps its own copies
            process = subprocess.Popen(
                [sys.executable, "-m", "agents", *extra, "--config", str(self.agent_config)],
                cwd=REPO,
                stdout=stdout,
                stderr=stderr,
            )
        return Agent(process, out, err)

    def stored_count(self) -> int:
        try:
            with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5) as db:
                return int(db.execute("SELECT count(*) FROM ds_ed_visits").fetchone()[0])
        except sqlite3.OperationalError:  # the table is created when the gateway starts
            return 0

    def stored_records(self, expected: Expected) -> Counter[RowKey]:
        return stored_records(f"sqlite:///{self.db}", expected)


def _expected(site: Site) -> tuple[Expected, int]:
    """What the agent's mapper makes of the whole export (and how many rows it rejects)."""
    expected = expected_records(site.agent_config)
    return expected, expected.rejected


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    port = _free_port()
    db = tmp_path / "gateway.db"
    layout = init_dev_pki(tmp_path / "pki", listen=f"127.0.0.1:{port}", store_url=f"sqlite:///{db}")
    generate(tmp_path / "data", people=2000)
    config = write_agent_configs(
        tmp_path / "pki", tmp_path / "data", address=f"127.0.0.1:{port}", batch_size=BATCH
    )["health"]
    # patient retries, so an agent outlives a gateway restart
    text = config.read_text()
    text = re.sub(
        r"(?m)^retries = \d+$", "retries = 100\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.3", text
    )
    text = re.sub(r"(?m)^timeout_s = \d+$", "timeout_s = 5", text)
    config.write_text(text)
    running = Site(tmp_path, layout.gateway_config, config, db, port)
    running.start_gateway()
    try:
        yield running
    finally:
        running.stop_gateway()


def _kill_when(site: Site, agent: Agent, stored_at_least: int) -> bool:
    """SIGKILL the agent once the gateway holds `stored_at_least` records; False if it finished first."""
    while agent.poll() is None:
        if site.stored_count() >= stored_at_least:
            agent.kill()
            return True
        time.sleep(0.002)
    return False


def _finish(site: Site) -> str:
    code, out, err = site.start_agent("push", "--json").wait()
    assert code == 0, err
    return out


def test_agent_killed_at_several_points_ends_with_exactly_the_source(site: Site) -> None:
    """SIGKILL the agent before its first batch and at three fill levels; after a final run the
    gateway holds every record of the export once."""
    early = site.start_agent("push")
    time.sleep(0.3)  # still starting: config, keys, contract
    early.kill()
    kills = 0
    for threshold in (1000, 2500, 4000):
        kills += _kill_when(site, site.start_agent("push"), threshold)
    _finish(site)

    expected, _rejected = _expected(site)
    assert kills == 3, "each agent was killed mid-push (the export was sent too fast to test)"
    assert site.stored_records(expected) == expected.records


def test_gateway_killed_and_restarted_mid_push_loses_and_doubles_nothing(site: Site) -> None:
    """The gateway dies twice under a running push and comes back; the agent's retries carry the push
    through and the gateway ends with every record once."""
    agent = site.start_agent("push", "--json")
    for threshold in (1500, 3500):
        while site.stored_count() < threshold:
            assert agent.poll() is None, "the push ended before the gateway could be killed"
            time.sleep(0.002)
        site.kill_gateway()
        time.sleep(0.5)  # the agent meets UNAVAILABLE and backs off
        site.start_gateway()
    code, out, err = agent.wait()

    assert code == 0, err
    expected, rejected = _expected(site)
    assert site.stored_records(expected) == expected.records
    assert f'"rejected": {rejected}' in out


def test_agent_that_gives_up_during_an_outage_delivers_everything_on_the_next_run(site: Site) -> None:
    """With the gateway down past the agent's retry deadline the push exits 5; its spool and read
    position survive, and the next run completes the export without doubles."""
    text = site.agent_config.read_text()
    site.agent_config.write_text(re.sub(r"(?m)^retries = \d+$", "retries = 2", text))
    agent = site.start_agent("push")
    while site.stored_count() < 2000:
        assert agent.poll() is None, "the push ended before the gateway could be stopped"
        time.sleep(0.002)
    site.kill_gateway()
    code, _out, err = agent.wait()
    assert code == 5, err

    site.start_gateway()
    _finish(site)

    expected, _rejected = _expected(site)
    assert site.stored_records(expected) == expected.records


def test_rejects_are_counted_once_across_kills(site: Site) -> None:
    """The reject file after killed and resumed runs lists each bad row of the export exactly once."""
    _kill_when(site, site.start_agent("push"), 3000)
    _finish(site)

    _expected_rows, rejected = _expected(site)
    lines = (site.root / "pki" / "state" / "health" / "rejects.csv").read_text().splitlines()
    assert rejected > 0
    assert len(lines) - 1 == rejected
    assert len(set(lines)) == len(lines)
