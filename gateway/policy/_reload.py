"""Reloading the policy bundle without a restart (issue 4, DESIGN §8).

A watcher thread hashes the bundle's files every ``interval_s`` seconds (0: never on its own)
and whenever it is asked to (SIGHUP, ``PolicyReloader.reload``). When the files changed, the
caller's ``load`` builds a complete new state (bundle, catalogue, engine) and ``install`` swaps
it in as one object, so in-flight requests finish on the revision they started with. A bundle
that does not load leaves the last good revision serving: the loader's ConfigError (which names
file and line) is logged once per broken state, counted, and the next edit is tried again.

Content is hashed rather than mtimes compared: an edit within one filesystem timestamp tick
that keeps the size (``k: 10`` to ``k: 12``) would slip past a stat check. The bundle is a few
dozen small files, so hashing them every few seconds costs well under a millisecond.

Each load runs on a thread of its own that ends when the load does: a regorus engine may only
be dropped on the thread that built it (see ``_embedded``), and the engine built while compiling
then goes with that thread instead of piling up on the watcher, one per reload.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Literal, Protocol, TypeVar

import structlog

from gateway.errors import ConfigError
from gateway.policy._bundle import DATA_FILES, bundle_files

log = structlog.get_logger("gateway.policy")

Status = Literal["reloaded", "unchanged", "failed"]


class Revisioned(Protocol):
    @property
    def revision(self) -> str: ...


S = TypeVar("S", bound=Revisioned)


@dataclass(frozen=True)
class ReloadOutcome:
    """What one check of the bundle came to. ``revision`` is the one serving afterwards."""

    status: Status
    revision: str
    error: str = ""


def bundle_digest(root: Path) -> str:
    """A hash of every file ``load_bundle`` reads (Rego modules and data files, outside dot
    directories), paths included; a directory that cannot be read hashes to its error."""
    digest = hashlib.sha256()
    try:
        for path in bundle_files(Path(root)):
            rel = path.relative_to(root)
            if path.suffix == ".rego" or path.name in DATA_FILES:
                digest.update(rel.as_posix().encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    except OSError as exc:  # mid-rename or gone: the load that follows says what is wrong
        return f"unreadable:{type(exc).__name__}:{exc.errno}"
    return digest.hexdigest()


class PolicyReloader(Generic[S]):
    """Watches ``root`` and swaps in what ``load`` builds from it; see the module docstring."""

    def __init__(
        self,
        root: Path,
        *,
        load: Callable[[], S],
        install: Callable[[S], None],
        serving: Callable[[], str],
        loaded_digest: str,
        interval_s: float,
        on_outcome: Callable[[ReloadOutcome], None] = lambda outcome: None,
    ) -> None:
        self._root = Path(root)
        self._load, self._install, self._serving = load, install, serving
        self._interval = interval_s
        self._on_outcome = on_outcome
        self._seen = loaded_digest  # the files the serving state was built from
        self._failed = ""  # the files that last failed to load, so a poll does not log them again
        self._failed_error = ""
        self._forced = False  # set by request(): the next check loads whatever is there
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._requested = 0
        self._done = 0
        self._last = ReloadOutcome("unchanged", "")
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="policy-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def request(self) -> None:
        """Check the bundle now, without waiting (safe from a signal handler: it only sets flags)."""
        self._forced = True
        self._wake.set()

    def reload(self, timeout_s: float = 60.0) -> ReloadOutcome:
        """Check the bundle now and return the outcome; TimeoutError if the watcher is not running
        or the load takes longer than ``timeout_s``."""
        with self._cond:
            self._requested += 1
            ticket = self._requested
            self._wake.set()
            if not self._cond.wait_for(lambda: self._done >= ticket, timeout_s):
                raise TimeoutError("policy reload: no outcome in time (is the gateway started?)")
            return self._last

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval if self._interval > 0 else None)
            if self._stopping:
                return
            self._wake.clear()
            with self._cond:
                ticket = self._requested
            forced, self._forced = self._forced or ticket > self._done, False
            outcome = self.check(forced=forced)
            with self._cond:
                self._done = max(self._done, ticket)
                self._last = outcome
                self._cond.notify_all()

    def check(self, *, forced: bool = False) -> ReloadOutcome:
        """One look at the bundle. A poll skips files already loaded or already refused; a
        forced check (SIGHUP, ``reload``) loads again whatever is there."""
        serving = self._serving()
        digest = bundle_digest(self._root)
        if not forced and digest == self._failed:
            return ReloadOutcome("failed", serving, self._failed_error)
        if not forced and digest == self._seen:
            if not self._failed:
                return ReloadOutcome("unchanged", serving)
            self._failed = self._failed_error = ""  # edited back to what serves: nothing is failing
            outcome = ReloadOutcome("unchanged", serving)
            self._on_outcome(outcome)
            return outcome
        try:
            state = _on_own_thread(self._load)
        except _LoadFailed as exc:  # a loader bug (not a ConfigError) is refused the same way
            return self._refused(digest, serving, exc.message)
        self._seen, self._failed, self._failed_error = digest, "", ""
        if state.revision == serving:
            outcome = ReloadOutcome("unchanged", serving)
        else:
            self._install(state)
            log.info("policy_reloaded", revision=state.revision, previous=serving, bundle=str(self._root))
            outcome = ReloadOutcome("reloaded", state.revision)
        self._on_outcome(outcome)
        return outcome

    def _refused(self, digest: str, serving: str, error: str) -> ReloadOutcome:
        self._failed, self._failed_error = digest, error
        log.error("policy_reload_failed", bundle=str(self._root), error=error, revision=serving)
        outcome = ReloadOutcome("failed", serving, error)
        self._on_outcome(outcome)
        return outcome


_T = TypeVar("_T")


class _LoadFailed(Exception):
    """A loader's failure, carried back without its traceback (see ``_on_own_thread``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _on_own_thread(work: Callable[[], _T]) -> _T:
    """``work()`` on a thread that ends with it. A failure comes back as a fresh _LoadFailed:
    the original's traceback holds the frames of the compile, and with them an engine that must
    be dropped on the thread that built it, not on the one that re-raises."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = work()
        except ConfigError as exc:
            box["error"] = _LoadFailed(exc.message)
        except BaseException as exc:  # noqa: BLE001 - reported by the calling thread
            box["error"] = _LoadFailed(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=run, name="policy-load")
    thread.start()
    thread.join()
    error = box.get("error")
    if isinstance(error, _LoadFailed):
        raise error
    return box["value"]  # type: ignore[return-value]
