"""A private PostgreSQL 15 cluster for the load and fault runs, which restart their database.

The shared server at 127.0.0.1:5432 is never touched: other tests (and CI) use it in parallel.
This one lives in a fresh directory under the system temp dir (not pytest's, which only root can
enter), listens on a free loopback port with its socket in that directory, and runs without
fsync: it holds throwaway data, and the runs measure the gateway, not the disk. PostgreSQL
refuses to run as root, so as root every server command runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Self

from bench._workspace import free_port

PG_BIN = Path(os.environ.get("DATASHARE_PG_BIN", "/usr/lib/postgresql/15/bin"))
_SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    "-c max_connections=200 -c shared_buffers=64MB"
)


def missing_binaries() -> str | None:
    """Why a private cluster cannot be made here, or None."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (PG_BIN / tool).is_file():
            return f"PostgreSQL 15 binaries not found in {PG_BIN} (set DATASHARE_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres OS user to run the server as"
    return None


class PrivatePostgres:
    """``with PrivatePostgres() as pg:`` a running cluster; ``pg.url``, ``restart()``, ``stop()``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="datashare-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def __enter__(self) -> Self:
        try:
            self._own(self.root)
            self._run(
                "initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"
            )
            self.start()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        try:
            self.stop()
        finally:
            self._remove()

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} {_SERVER_OPTIONS}"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start"
        )

    def stop(self) -> None:
        """Fast shutdown: open sessions are cut, as in a crash of the connections, not of the data."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, timeout=120, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).decode(errors="replace")[-2000:]
            raise RuntimeError(f"{tool} failed with status {done.returncode}: {tail}")

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(path, user.pw_uid, user.pw_gid)

    def _remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
