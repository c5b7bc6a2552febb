"""Run the agent's command line in a child Python the way an agency machine would see it.

`run_agent(args, ...)` starts `python -c <program> ARGS...` where the program first installs an
import blocker refusing the gateway package and every dependency only the gateway needs (so the
agent must work with them absent), runs `agents.cli.main(ARGS)`, then fails with exit 97 if any
blocked module got imported after all.

With `deny_write_execute=True` the child first installs the seccomp filter systemd's
MemoryDenyWriteExecute=yes uses (x86-64 only): mmap with PROT_WRITE|PROT_EXEC, mprotect or
pkey_mprotect with PROT_EXEC, and shmat with SHM_EXEC fail with EPERM. It then re-executes
Python, so the agent's interpreter runs under the filter from its first instruction, as under
systemd; the new interpreter proves the filter bites (a W+X mapping must be refused, else exit 98)
before it runs the agent.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parents[2]

# the gateway and what only it needs (pyproject.toml: sqlalchemy, gordon-to-regorus, pyyaml,
# structlog, prometheus-client, grpcio-health-checking, grpcio-reflection; psycopg for PostgreSQL)
BLOCKED = (
    "gateway",
    "sqlalchemy",
    "regorus",
    "yaml",
    "structlog",
    "prometheus_client",
    "grpc_health",
    "grpc_reflection",
    "psycopg",
)


class Gateway(Protocol):
    """What the tests ask of the running gateway (e2e_harness.Running)."""

    def stored_rows(self, dataset: str) -> int: ...


@dataclass(frozen=True)
class AgentSite:
    """An agent config (ED visits of the demo's health agency) pointing at a running gateway."""

    gateway: Gateway
    config: Path
    state_dir: Path


LEAKED_EXIT = 97
FILTER_INEFFECTIVE_EXIT = 98

# Run first under deny_write_execute: the filter must bite, else exit FILTER_INEFFECTIVE_EXIT.
_FILTER_CHECK = f"""\
import mmap

try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
except PermissionError:
    pass
else:
    sys.stderr.write("sandbox: a writable and executable mapping was allowed\\n")
    sys.exit({FILTER_INEFFECTIVE_EXIT})
"""

_AGENT_PROGRAM = """\
import sys

BLOCKED = frozenset({blocked!r})


class _RefuseServerDependencies:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: not an agent dependency)", name=name)
        return None


preloaded = sorted(n for n in sys.modules if n.partition(".")[0] in BLOCKED)
if preloaded:
    sys.stderr.write(f"sandbox: already imported before the blocker: {{preloaded}}\\n")
    sys.exit({leaked})
sys.meta_path.insert(0, _RefuseServerDependencies())

{filter_check}
from agents.cli import main

code = main(sys.argv[1:])
leaked = sorted(n for n in sys.modules if n.partition(".")[0] in BLOCKED)
if leaked:
    sys.stderr.write(f"sandbox: the agent imported {{leaked}}\\n")
    sys.exit({leaked_exit})
sys.exit(code)
"""

# Stage one of deny_write_execute: install the filter, then exec the agent program. The BPF
# program reads struct seccomp_data: nr at offset 0, arch at 4, args[2] (low half) at 32.
_FILTER_PROGRAM = """\
import ctypes, os, struct, sys

LD_ABS, JEQ, JSET, AND, RET = 0x20, 0x15, 0x45, 0x54, 0x06
ALLOW, DENY = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
X86_64 = 0xC000003E
MMAP, MPROTECT, SHMAT, PKEY_MPROTECT = 9, 10, 30, 329
PROT_WRITE, PROT_EXEC, SHM_EXEC = 2, 4, 0o100000

code = [
    ("ld", 4), ("jeq", X86_64, 0, "allow"),
    ("ld", 0),
    ("jeq", MMAP, "mmap", 0), ("jeq", MPROTECT, "mprotect", 0),
    ("jeq", PKEY_MPROTECT, "mprotect", 0), ("jeq", SHMAT, "shmat", 0),
    ("ret", ALLOW),
    "mmap", ("ld", 32), ("and", PROT_WRITE | PROT_EXEC), ("jeq", PROT_WRITE | PROT_EXEC, "deny", "allow"),
    "mprotect", ("ld", 32), ("jset", PROT_EXEC, "deny", "allow"),
    "shmat", ("ld", 32), ("jset", SHM_EXEC, "deny", "allow"),
    "deny", ("ret", DENY),
    "allow", ("ret", ALLOW),
]
labels, pc = {{}}, 0
for item in code:
    if isinstance(item, str):
        labels[item] = pc
    else:
        pc += 1
program, pc = b"", 0
for item in code:
    if isinstance(item, str):
        continue
    op, k, *targets = item
    jt, jf = (t if isinstance(t, int) else labels[t] - pc - 1 for t in (targets or [0, 0]))
    opcode = {{"ld": LD_ABS, "jeq": JEQ, "jset": JSET, "and": AND, "ret": RET}}[op]
    program += struct.pack("=HBBI", opcode, jt, jf, k)
    pc += 1


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


buffer = ctypes.create_string_buffer(program)
fprog = SockFprog(pc, ctypes.addressof(buffer))
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, as NoNewPrivileges=yes
    sys.exit(f"sandbox: PR_SET_NO_NEW_PRIVS failed: {{os.strerror(ctypes.get_errno())}}")
if libc.prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit(f"sandbox: PR_SET_SECCOMP failed: {{os.strerror(ctypes.get_errno())}}")
os.execv(sys.executable, [sys.executable, "-c", sys.argv[1], *sys.argv[2:]])
"""


_GATEWAY_PROGRAM = f"""\
import sys

{_FILTER_CHECK}
from gateway.cli import main

sys.exit(main(sys.argv[1:]))
"""


def run_gateway_denying_write_execute(
    args: Sequence[str], *, cwd: Path = REPO, timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """Run `gateway ARGS` under the MemoryDenyWriteExecute filter (see the module doc); its child
    processes (the demo's agents) inherit the filter."""
    command = [sys.executable, "-c", _FILTER_PROGRAM.format(), _GATEWAY_PROGRAM, *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def seccomp_filter_supported() -> bool:
    """The filter is written for x86-64 Linux syscall numbers."""
    return sys.platform == "linux" and platform.machine() == "x86_64"


def agent_program(*, check_filter: bool = False) -> str:
    return _AGENT_PROGRAM.format(
        blocked=BLOCKED,
        leaked=LEAKED_EXIT,
        leaked_exit=LEAKED_EXIT,
        filter_check=_FILTER_CHECK if check_filter else "",
    )


def run_agent(
    args: Sequence[str],
    *,
    deny_write_execute: bool = False,
    cwd: Path = REPO,
    extra_path: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run `agent ARGS` in a child Python without the gateway's dependencies; see the module doc."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(extra_path), env.get("PYTHONPATH")]))
    if deny_write_execute:
        program = agent_program(check_filter=True)
        command = [sys.executable, "-c", _FILTER_PROGRAM.format(), program, *args]
    else:
        command = [sys.executable, "-c", agent_program(), *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
