"""One OPA server as this gateway process sees it: the clients that talk to it, what was pushed
to it, and a lock that keeps decisions out while a push is under way (DESIGN §8).

Policies and data are *pushed* over OPA's REST API (``PUT /v1/policies/{id}``,
``PUT /v1/data/{key}``) rather than served as a bundle for OPA to download, because a push can
be checked end to end here, against an endpoint that evaluates with real OPA's engine. Serving
``policies/`` as an OPA bundle (``opa build``, OPA's ``bundles`` config) works with the same Rego
and data unchanged; the gateway then only decides and stamps the revision it computed itself.

A push is not atomic on the server: it is a series of PUTs and DELETEs. It is atomic from the
gateway's point of view because no decision of this process runs while one is under way (a
readers-writer lock), and every decision is stamped with the revision the server held when it
answered. A push the server refuses is rolled back to the previous bundle; if even that fails,
the sidecar is marked unsynchronised and every decision denies until a push succeeds. One
sidecar serves one gateway process: two processes pushing different bundles to one OPA would
overwrite each other.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog

from gateway.errors import ConfigError

log = structlog.get_logger("gateway.policy")

POLICY_ID_PREFIX = "datashare-gateway/"
"""Ids of the modules this gateway pushes; it only ever deletes modules under this prefix."""

RESYNC_INTERVAL_S = 1.0
PUSH_TIMEOUT_S = 10.0  # OPA compiles every module on each policy PUT; that can take a while


@dataclass(frozen=True)
class Pushed:
    """A bundle as it stands on the server: policy id -> source, top-level data key -> value."""

    revision: str
    modules: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)


class _ReadWriteLock:
    """Many decisions at once, or one push; a waiting push goes before new decisions."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    def acquire_read(self, timeout: float) -> bool:
        with self._cond:
            ok = self._cond.wait_for(lambda: not self._writing and not self._writers_waiting, timeout)
            if ok:
                self._readers += 1
            return ok

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    ssl: bool


def parse_opa_url(url: str) -> Endpoint:
    """``http(s)://host[:port]`` -> where opa-python-client should connect; ConfigError otherwise."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError("policy.opa_url: the port is not a number from 0 to 65535") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("policy.opa_url: must be an http:// or https:// URL with a host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        # opa-python-client builds every URL as scheme://host:port/v1/...; a prefix would be dropped
        raise ConfigError("policy.opa_url: give only scheme, host and port (OPA serves its API at /v1)")
    default = 443 if parts.scheme == "https" else 8181
    return Endpoint(parts.hostname, port or default, parts.scheme == "https")


class Sidecar:
    """See the module docstring. Get one with ``sidecar_for(url)``."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._lock = _ReadWriteLock()
        self._clients: dict[int, Any] = {}
        self._clients_lock = threading.Lock()
        self._pushed: Pushed | None = None  # None: the server's state is unknown
        self._last_good: Pushed | None = None
        self._resync_lock = threading.Lock()
        self._resyncing = False
        self._next_resync = 0.0

    def client(self, timeout_ms: int) -> Any:
        """An OpaClient that gives up after ``timeout_ms`` and never retries (so the deadline
        holds). One per timeout, kept for the process: its connection pool is shared by threads."""
        with self._clients_lock:
            client = self._clients.get(timeout_ms)
            if client is None:
                client = self._new_client(timeout_ms / 1000, retries=0)
                self._clients[timeout_ms] = client
            return client

    def _new_client(self, timeout_s: float, retries: int) -> Any:
        from opa_client import OpaClient  # imported when an OPA engine is configured: aiohttp is slow

        ep = self.endpoint
        return OpaClient(host=ep.host, port=ep.port, ssl=ep.ssl, retries=retries, timeout=timeout_s)

    @contextmanager
    def reading(self, timeout_s: float) -> Iterator[Pushed | None]:
        """What the server holds, for as long as a decision takes; TimeoutError if a push keeps
        the lock longer than ``timeout_s``. None when the server's state is unknown."""
        if not self._lock.acquire_read(timeout_s):
            raise TimeoutError
        try:
            yield self._pushed
        finally:
            self._lock.release_read()

    def push(self, new: Pushed) -> None:
        """Make the server hold ``new``; if it refuses, or cannot be reached, restore what it held
        and raise ConfigError saying why.

        Every module and data document is sent, whatever this process believes the server holds:
        the server may have restarted empty since (a sidecar restart, a port taken over)."""
        with self._lock.writing():
            # no retries: a server that does not answer fails the push within PUSH_TIMEOUT_S
            admin = self._new_client(PUSH_TIMEOUT_S, retries=0)
            old = self._pushed or Pushed("")
            try:
                current = _our_modules(admin)
                _transfer(admin, Pushed(old.revision, current, old.data), new)
            except Exception as exc:  # restore, then report whatever it was
                message = _push_error(exc)
                self._pushed = self._restore(admin, old, new)
                log.error(  # noqa: TRY400 - the server's reply is the message; no traceback
                    "opa_push_failed", revision=new.revision, error=message, serving=self.revision
                )
                raise ConfigError(f"OPA server at {self.url}: {message}") from exc
            else:
                self._pushed = self._last_good = new
            finally:
                admin.close_connection()
        log.info("opa_pushed", url=self.url, revision=new.revision, modules=len(new.modules))

    def resync_soon(self, *, verify: bool = False) -> None:
        """Push the last good bundle again, in the background and at most once a second: when a
        failed push left the server in an unknown state, or (``verify``) when the server answered
        undefined and turns out to have lost our modules. Decisions deny until it lands."""
        with self._resync_lock:
            if self._resyncing or self._last_good is None or time.monotonic() < self._next_resync:
                return
            self._resyncing, self._next_resync = True, time.monotonic() + RESYNC_INTERVAL_S
        threading.Thread(target=self._resync, args=(verify,), name="opa-resync", daemon=True).start()

    def _resync(self, verify: bool) -> None:
        try:
            last, pushed = self._last_good, self._pushed
            if last is None or (verify and pushed is not None and self._holds(pushed)):
                return
            log.warning("opa_resync", url=self.url, revision=last.revision)
            self.push(last)
        except ConfigError:
            pass  # push() logged why; a later decision tries again
        finally:
            self._resyncing = False

    def _holds(self, pushed: Pushed) -> bool:
        admin = self._new_client(PUSH_TIMEOUT_S, retries=0)
        try:
            return set(_our_modules(admin)) == set(pushed.modules)
        except Exception:  # noqa: BLE001 - cannot tell: push again, which reports what is wrong
            return False
        finally:
            admin.close_connection()

    def _restore(self, admin: Any, old: Pushed, failed: Pushed) -> Pushed | None:
        """``old`` back on the server, or None (unknown state) if there was none or it fails."""
        if not old.revision:
            return None
        try:
            _transfer(admin, failed, old)
        except Exception as exc:  # noqa: BLE001 - the server is in an unknown state: deny until a push works
            log.error("opa_restore_failed", revision=old.revision, error=_push_error(exc))  # noqa: TRY400
            return None
        return old

    @property
    def revision(self) -> str:
        return self._pushed.revision if self._pushed else ""

    @property
    def url(self) -> str:
        ep = self.endpoint
        return f"{'https' if ep.ssl else 'http'}://{ep.host}:{ep.port}"


_SIDECARS: dict[Endpoint, Sidecar] = {}
_SIDECARS_LOCK = threading.Lock()


def sidecar_for(url: str) -> Sidecar:
    """The one Sidecar of this process for the OPA server at ``url``."""
    endpoint = parse_opa_url(url)
    with _SIDECARS_LOCK:
        return _SIDECARS.setdefault(endpoint, Sidecar(endpoint))


# --- the push itself -------------------------------------------------------------------------


def _our_modules(admin: Any) -> dict[str, str]:
    """The modules a previous run of the gateway left on the server (their sources unknown)."""
    ids = admin.get_policies_list()
    return {pid: "" for pid in ids if isinstance(pid, str) and pid.startswith(POLICY_ID_PREFIX)}


def _transfer(admin: Any, old: Pushed, new: Pushed) -> None:
    """Turn the server's ``old`` into ``new``: every module and data document of ``new`` sent,
    what only ``old`` had deleted.

    OPA recompiles all modules on every policy PUT or DELETE and refuses a change that leaves
    them inconsistent (a rule defined in two modules while it moves between files, a function
    used before the module defining it arrives), so changes are retried in rounds until none
    makes progress."""
    _rounds([pid for pid in old.modules if pid not in new.modules], admin.delete_policy)
    _rounds(
        list(new.modules),
        lambda pid: admin.update_policy_from_string(new.modules[pid], pid, rego_compat=False),
    )
    for key, value in new.data.items():
        admin.update_or_create_data(value, key)
    for key in old.data:
        if key not in new.data:
            admin.delete_data(key)


def _rounds(items: list[str], apply: Callable[[str], object]) -> None:
    pending = list(items)
    while pending:
        failed: list[str] = []
        first_error: Exception | None = None
        for item in pending:
            try:
                apply(item)
            except Exception as exc:  # may succeed once the others are in place
                if _transport_failure(exc):  # the others would wait out the same timeout
                    raise
                failed.append(item)
                first_error = first_error or exc
        if len(failed) == len(pending):
            assert first_error is not None
            raise first_error
        pending = failed


def _push_error(exc: BaseException) -> str:
    """Why the push failed, one line: OPA's compile errors name file:row."""
    from opa_client.errors import RegoParseError
    from requests import exceptions as http

    if isinstance(exc, RegoParseError):
        details = [_located(err) for err in exc.errors if isinstance(err, Mapping) and err.get("message")]
        return "refused the policy bundle: " + ("; ".join(details) or str(exc.message or exc.expression))
    if _transport_failure(exc):
        return "cannot push the policy bundle: the server does not answer"
    if isinstance(exc, http.RequestException):
        return "cannot push the policy bundle: the server's answer is not OPA's"
    message = getattr(exc, "message", None)
    if not isinstance(message, str) or not message:
        message = f"{type(exc).__name__}: {exc}".split("\n", 1)[0]
    return f"refused the policy bundle: {message}"


def _transport_failure(exc: BaseException) -> bool:
    from requests import exceptions as http

    return isinstance(exc, http.ConnectionError | http.Timeout)


def _located(err: Mapping[str, Any]) -> str:
    where = err.get("location")
    message = str(err["message"])
    if isinstance(where, Mapping) and where.get("file"):
        file = str(where["file"]).removeprefix(POLICY_ID_PREFIX)
        return f"{file}:{where.get('row', '?')}: {message}"
    return message
