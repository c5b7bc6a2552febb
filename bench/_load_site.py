"""The processes of a load run: two gateways on one database, two agents in service mode, and
(for the policy-engine fault) one OPA-speaking sidecar per gateway; plus the growing exports.

Everything is a real child process on loopback (``python -m gateway serve``, ``python -m agents
run``), configured from a fresh development PKI. The synthetic exports are generated whole into
``full/``; the agents read ``data/``, which starts with the first part of each export and is
appended to, whole lines at a time, while the run goes on (the agent reads a growing CSV export).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench._workspace import free_port
from gateway.demo import generate, write_agent_configs
from gateway.pki import PkiLayout, init_dev_pki

REPO_ROOT = Path(__file__).resolve().parent.parent
AGENCIES = ("health", "metro-police")  # one agent each; agent i pushes to gateway i
START_TIMEOUT_S = 60.0


@dataclass
class Child:
    """A child process whose output goes to a log file (files, not pipes: nothing can block)."""

    process: subprocess.Popen[bytes]
    log: Path

    @classmethod
    def start(cls, command: list[str], log: Path) -> Child:
        with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=sink, stderr=sink)
        return cls(process, log)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; the exit status."""
        if self.alive:
            self.process.terminate()
            try:
                return self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def cpu_s(self) -> float:
        """User + system CPU seconds so far (0 once it has exited and been reaped)."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]


def _wait_listening(port: int, child: Child) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not child.alive:
            raise RuntimeError(f"{child.log.name}: exited with {child.process.returncode}\n{child.tail()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{child.log.name}: not listening on {port} after {START_TIMEOUT_S:.0f} s")


@dataclass
class Export:
    """One export growing by whole lines: ``lines`` not yet appended to ``path``."""

    path: Path
    lines: list[bytes]
    total: int  # records in the whole export

    def append(self, count: int) -> int:
        chunk, self.lines = self.lines[:count], self.lines[count:]
        if chunk:
            with self.path.open("ab") as sink:
                sink.write(b"".join(chunk))  # one write of whole lines
        return len(chunk)


@dataclass
class LoadSite:
    root: Path
    layout: PkiLayout
    store_url: str
    gateway_ports: tuple[int, int]
    gateway_configs: tuple[Path, Path]
    agent_configs: dict[str, Path]
    exports: list[Export]
    opa_ports: tuple[int, int] | None = None
    opa_script: Path | None = None
    gateways: list[Child | None] = field(default_factory=lambda: [None, None])
    sidecars: list[Child | None] = field(default_factory=lambda: [None, None])
    agents: list[Child] = field(default_factory=list)

    def address(self, index: int) -> str:
        return f"127.0.0.1:{self.gateway_ports[index]}"

    # --- gateways and sidecars ------------------------------------------------------------------

    def start_gateway(self, index: int) -> None:
        command = [sys.executable, "-m", "gateway", "serve", "--config", str(self.gateway_configs[index])]
        child = Child.start(command, self.root / f"gateway-{index}.log")
        self.gateways[index] = child
        _wait_listening(self.gateway_ports[index], child)

    def kill_gateway(self, index: int) -> None:
        child = self.gateways[index]
        if child is not None:
            child.kill()

    def start_sidecar(self, index: int) -> None:
        if self.opa_ports is None or self.opa_script is None:
            raise RuntimeError("this site runs the embedded policy engine")
        port = self.opa_ports[index]
        command = [sys.executable, str(self.opa_script), "--port", str(port)]
        child = Child.start(command, self.root / f"opa-{index}.log")
        self.sidecars[index] = child
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not child.alive:
                raise RuntimeError(f"OPA sidecar exited with {child.process.returncode}\n{child.tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"OPA sidecar not answering on {port}")

    def kill_sidecar(self, index: int) -> None:
        child = self.sidecars[index]
        if child is not None:
            child.kill()

    # --- agents and exports ----------------------------------------------------------------------

    def start_agents(self) -> None:
        for agency in AGENCIES:
            command = [sys.executable, "-m", "agents", "run", "--config", str(self.agent_configs[agency])]
            self.agents.append(Child.start(command, self.root / f"agent-{agency}.log"))

    def grow(self, fraction: float) -> int:
        """Append about ``fraction`` of each export's full length (what is left, at most)."""
        added = 0
        for export in self.exports:
            added += export.append(max(1, round(export.total * fraction)))
        return added

    @property
    def grown(self) -> bool:
        return not any(export.lines for export in self.exports)

    def tracebacks(self) -> list[str]:
        """The child logs holding a Python traceback (an error must be a status and a log line)."""
        return sorted(
            log.name
            for log in self.root.glob("*.log")
            if "Traceback (most recent call last)" in log.read_text(errors="replace")
        )

    def stop(self) -> dict[str, int]:
        """Stop everything still running; the agents' exit statuses by agency."""
        codes = {agency: agent.terminate() for agency, agent in zip(AGENCIES, self.agents, strict=False)}
        for child in [*self.gateways, *self.sidecars]:
            if child is not None:
                child.terminate(timeout_s=10)
        return codes


def make_site(
    root: Path,
    store_url: str,
    *,
    people: int,
    initial: float,
    batch_size: int,
    opa_script: Path | None = None,
) -> LoadSite:
    """PKI, two gateway configs on ``store_url``, the exports (``initial`` of each in place) and
    two agent configs in service mode with patient retries (an agent outlives an outage)."""
    ports = (free_port(), free_port())
    layout = init_dev_pki(root / "pki", listen=f"127.0.0.1:{ports[0]}", store_url=store_url)
    opa_ports = (free_port(), free_port()) if opa_script is not None else None
    configs = []
    for index, port in enumerate(ports):
        text = layout.gateway_config.read_text()
        text = re.sub(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{port}"', text)
        text = re.sub(r'(?m)^log_level = ".*"$', 'log_level = "warning"', text)
        if opa_ports is not None:
            text = re.sub(r'(?m)^engine = ".*"$', 'engine = "opa"', text)
            text = re.sub(r'(?m)^opa_url = ".*"$', f'opa_url = "http://127.0.0.1:{opa_ports[index]}"', text)
        path = root / "pki" / f"gateway-{index}.toml"
        path.write_text(text)
        configs.append(path)
    full, data = root / "full", root / "data"
    files = generate(full, people=people)
    shutil.copytree(full, data)  # the lookups do not grow; the exports are cut back below
    exports = []
    for source in (files.ed_visits, files.police_incidents):
        lines = source.read_bytes().splitlines(keepends=True)
        keep = 1 + round((len(lines) - 1) * initial)  # the header and the first part
        (data / source.name).write_bytes(b"".join(lines[:keep]))
        exports.append(Export(data / source.name, lines[keep:], len(lines) - 1))
    agent_configs = write_agent_configs(
        root / "pki", data, address=f"127.0.0.1:{ports[0]}", batch_size=batch_size
    )
    for index, agency in enumerate(AGENCIES):
        text = agent_configs[agency].read_text()
        text = re.sub(r'(?m)^address = ".*"$', f'address = "127.0.0.1:{ports[index]}"', text)
        text = re.sub(
            r"(?m)^retries = \d+$", "retries = 100\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.5", text
        )
        text = re.sub(r"(?m)^timeout_s = \d+$", "timeout_s = 5", text)
        agent_configs[agency].write_text(text + "[run]\ninterval_s = 1\n")
    return LoadSite(
        root=root,
        layout=layout,
        store_url=store_url,
        gateway_ports=ports,
        gateway_configs=(configs[0], configs[1]),
        agent_configs=agent_configs,
        exports=exports,
        opa_ports=opa_ports,
        opa_script=opa_script,
    )
