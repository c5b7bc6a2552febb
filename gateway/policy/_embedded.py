"""The embedded policy engine: the bundle's Rego evaluated in-process by regorus (DESIGN §8).

regorus engines are *unsendable*: pyo3 panics if one is used, cloned or even dropped on a thread
other than the one that made it. So neither a lock around one engine nor clones handed to pool
threads can work; each thread that decides builds its own engine from the checked sources on
first use and keeps it in thread-local storage, where it is also dropped when the thread ends.
An engine of a retired EmbeddedEngine is dropped by its own thread on that thread's next call.

Everything that can go wrong while deciding (an engine error, a Rust panic, an undefined or
malformed result, input that is not plain JSON) becomes a deny with ``error`` set; nothing raises.
"""

from __future__ import annotations

import itertools
import json
import threading
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.errors import ConfigError, PolicyEngineError
from gateway.policy._bundle import Bundle
from gateway.policy._compile import (
    InputError,
    Program,
    compile_modules,
    defined_rules,
    engine_message,
    plain_input,
    rule_reference,
)
from gateway.policy._engine import (
    AUDIT_RULE,
    INGEST_RULE,
    LISTING_RULE,
    LOG_MASK_RULE,
    QUERY_RULE,
    Failure,
    PolicyDecision,
    PolicyEngine,
    decision_of,
)

GATEWAY_RULES = (INGEST_RULE, QUERY_RULE, AUDIT_RULE, LISTING_RULE, LOG_MASK_RULE)
"""The rules the gateway consults; a bundle for the gateway must define every one."""

ENGINE_ERROR_REASON = "policy engine error"
_UNDEFINED_JSON = "<undefined>"  # what regorus's eval_rule_as_json gives for an undefined rule


# --- per-thread engines ----------------------------------------------------------------------


class _ThreadEngines(threading.local):
    def __init__(self) -> None:
        self.engines: dict[int, Any] = {}
        self.seen_retirements = 0


_PER_THREAD = _ThreadEngines()
_TOKENS = itertools.count(1)
_RETIRED: set[int] = set()
_RETIRED_LOCK = threading.Lock()
_retirements = 0


def _retire(token: int) -> None:
    global _retirements  # noqa: PLW0603 - one process-wide generation counter, under a lock
    with _RETIRED_LOCK:
        _RETIRED.add(token)
        _retirements += 1


def _drop_retired(cache: _ThreadEngines) -> None:
    """Drop, on this thread, the engines this thread built for retired EmbeddedEngines."""
    if cache.seen_retirements == _retirements:
        return
    with _RETIRED_LOCK:
        retired, generation = set(_RETIRED), _retirements
    for token in retired.intersection(cache.engines):
        del cache.engines[token]
    cache.seen_retirements = generation


# --- the engine ------------------------------------------------------------------------------


class EmbeddedEngine:
    """The PolicyEngine that evaluates the bundle in-process (DESIGN §8's default)."""

    def __init__(self, program: Program, revision: str, engine: Any = None) -> None:
        self._program = program
        self._revision = revision
        self._token = next(_TOKENS)
        if engine is not None:
            _PER_THREAD.engines[self._token] = engine
        weakref.finalize(self, _retire, self._token)

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, require: Sequence[str] = GATEWAY_RULES) -> EmbeddedEngine:
        """Compile the bundle's decision modules (not its tests) with its data.

        ConfigError names file:line for anything that does not compile, and names every rule of
        ``require`` (``pkg/rule`` paths) the bundle does not define."""
        program, engine = compile_modules(bundle.policy_modules, bundle.data)
        missing = sorted(set(require) - defined_rules(engine))
        if missing:
            raise ConfigError(f"policy bundle {bundle.root}: defines no rule {', '.join(missing)}")
        return cls(program, bundle.revision, engine)

    @property
    def revision(self) -> str:
        return self._revision

    def decide(self, path: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        try:
            value = self._evaluate(path, input_doc)
        except BaseException as exc:  # fail closed: any engine failure is a deny
            if not _engine_failure(exc):
                raise
            return self._failed(path, Failure(_failure_kind(exc), _failure_text(exc)))
        decision = decision_of(path, self._revision, value)
        return self._failed(path, decision) if isinstance(decision, Failure) else decision

    def query(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        try:
            value = self._evaluate(path, input_doc, as_json=True)
        except BaseException as exc:  # translated at the boundary
            if not _engine_failure(exc):
                raise
            raise PolicyEngineError(f"policy {path}: {_failure_text(exc)}") from exc
        if value is None:
            raise PolicyEngineError(f"policy {path}: result is undefined")
        return value

    def _evaluate(self, path: str, input_doc: Mapping[str, Any], *, as_json: bool = False) -> Any:
        """The rule's value. ``as_json``: as OPA's REST API would give it (sets as arrays):
        regorus hands a Rego set to Python as a set, which cannot hold objects (the log
        mask's upserts), so raw queries read the value as JSON text instead."""
        rule = rule_reference(path)
        plain = plain_input(input_doc)
        engine = self._engine()
        engine.set_input(plain)
        if not as_json:
            return engine.eval_rule(rule)
        value = json.loads(engine.eval_rule_as_json(rule))
        if value == _UNDEFINED_JSON:  # or a rule whose value is that very text: ask plainly
            return engine.eval_rule(rule)
        return value

    def _engine(self) -> Any:
        cache = _PER_THREAD
        _drop_retired(cache)
        engine = cache.engines.get(self._token)
        if engine is None:
            engine = self._program.build()
            cache.engines[self._token] = engine
        return engine

    def _failed(self, path: str, failure: Failure) -> PolicyDecision:
        return PolicyDecision(
            allow=False,
            reasons=(ENGINE_ERROR_REASON,),
            revision=self._revision,
            path=path,
            error=failure.message,
            failure=failure.kind,
        )


def _engine_failure(exc: BaseException) -> bool:
    # A Rust panic surfaces as pyo3's PanicException, a BaseException; it is an engine failure,
    # unlike KeyboardInterrupt or SystemExit.
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _failure_kind(exc: BaseException) -> str:
    return "bad_input" if isinstance(exc, InputError) else "engine_error"


def _failure_text(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return str(exc)
    if type(exc).__name__ == "PanicException":
        return "policy engine panicked"
    return engine_message(exc, redact=True)


def make_engine(
    settings_engine: str,
    bundle: Bundle,
    *,
    opa_url: str = "",
    timeout_ms: int = 500,
    require: Iterable[str] = GATEWAY_RULES,
) -> PolicyEngine:
    """The engine the settings name: "embedded" (in-process) or "opa" (the bundle pushed to the
    OPA server at ``opa_url``; each decision a request that gives up after ``timeout_ms``)."""
    if settings_engine == "embedded":
        return EmbeddedEngine.from_bundle(bundle, require=tuple(require))
    if settings_engine == "opa":
        from gateway.policy._opa import OpaServerEngine

        return OpaServerEngine.from_bundle(
            bundle, opa_url=opa_url, timeout_ms=timeout_ms, require=tuple(require)
        )
    raise ConfigError(f"policy.engine: must be 'embedded' or 'opa', not {settings_engine!r}")
