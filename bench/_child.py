"""Running one benchmark child process and reading its own resource use from the kernel.

CPU seconds come from ``os.wait4`` (the child's own, nothing mixed in from earlier children as
``RUSAGE_CHILDREN`` would). Peak RSS does not: Linux carries the forking process's high-water
mark into the child's ``ru_maxrss`` at exec, so a child of a large benchmark process would report
the parent's size. It is read instead from ``VmHWM`` in ``/proc/<pid>/status`` (the high-water
mark of the child's own memory since exec) at every poll, the last reading kept; a peak in the
last poll interval before exit could be missed. Output goes to files, not pipes, so nothing can
block while we wait.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

_POLL_S = 0.02


@dataclass(frozen=True)
class ChildRun:
    returncode: int
    stdout: str
    stderr: str
    wall_s: float  # start of the process to its exit, interpreter start-up included
    cpu_s: float  # user + system
    peak_rss_kb: int


def run_child(command: list[str], *, cwd: Path, timeout_s: float, stdin: bytes = b"") -> ChildRun:
    """Run ``command`` to its end (killed after ``timeout_s``: TimeoutError)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as inp:
        inp.write(stdin)
        inp.seek(0)
        started = time.perf_counter()
        proc = subprocess.Popen(command, cwd=cwd, stdin=inp, stdout=out, stderr=err)
        deadline = started + timeout_s
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.kill(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -signal.SIGKILL  # reaped here: Popen must not think it still runs
                raise TimeoutError(f"{command[2] if len(command) > 2 else command[0]}: timed out")
            time.sleep(_POLL_S)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return ChildRun(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            peak_rss_kb=peak_kb,
        )


def _high_water_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0  # a zombie has no memory lines left
