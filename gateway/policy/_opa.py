"""The OPA-server policy engine: the bundle pushed to an OPA sidecar, each decision a POST of the
input to OPA's Data API, through opa-python-client (DESIGN §8's production engine).

The bundle is checked here first exactly as the embedded engine checks it (Rego v1, no unknown
function, every gateway rule defined), so a bad bundle is refused with file:line before the
server sees it; then ``_sidecar`` pushes it. Decisions are stamped with the revision the server
held when it answered (the same string ``load_bundle`` computes, so both engines stamp alike).

Fail closed: a refused connection, a timeout (``[policy] timeout_ms``, also while a push holds
the server), a status other than 200, a body that is not a JSON object, an undefined or
malformed result, or a server left unsynchronised by a failed push all deny with the reason
"policy engine unavailable", logged with a fixed ``failure`` kind that the gateway counts.
Nothing from the input or from the server's error body is logged: OPA echoes input values in
its evaluation errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from gateway.errors import ConfigError, PolicyEngineError
from gateway.policy._bundle import Bundle
from gateway.policy._compile import InputError, compile_modules, defined_rules, plain_input, rule_reference
from gateway.policy._engine import (
    AUDIT_RULE,
    INGEST_RULE,
    LISTING_RULE,
    LOG_MASK_RULE,
    QUERY_RULE,
    Failure,
    PolicyDecision,
    decision_of,
)
from gateway.policy._sidecar import POLICY_ID_PREFIX, Pushed, Sidecar, sidecar_for

log = structlog.get_logger("gateway.policy")

UNAVAILABLE_REASON = "policy engine unavailable"
_GATEWAY_RULES = (INGEST_RULE, QUERY_RULE, AUDIT_RULE, LISTING_RULE, LOG_MASK_RULE)


class _Failed(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.failure = Failure(kind, message)


class OpaServerEngine:
    """The PolicyEngine that asks an OPA server; build it with ``from_bundle``."""

    def __init__(self, sidecar: Sidecar, revision: str, timeout_ms: int) -> None:
        self._sidecar = sidecar
        self._revision = revision
        self._timeout_ms = timeout_ms
        self._client = sidecar.client(timeout_ms)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        opa_url: str,
        timeout_ms: int = 500,
        require: Sequence[str] = _GATEWAY_RULES,
    ) -> OpaServerEngine:
        """Check the bundle, push it to the OPA server at ``opa_url`` and return an engine
        deciding with it. ConfigError names file:line for a bad bundle, or says why the server
        refused it (the server then keeps the bundle it had)."""
        program, engine = compile_modules(bundle.policy_modules, bundle.data)
        missing = sorted(set(require) - defined_rules(engine))
        del engine  # built on this thread, dropped on it (regorus engines are unsendable)
        if missing:
            raise ConfigError(f"policy bundle {bundle.root}: defines no rule {', '.join(missing)}")
        for key, value in program.data.items():
            if not isinstance(value, Mapping):
                raise ConfigError(f"policy bundle {bundle.root}: data.{key} must be a mapping for OPA")
        sidecar = sidecar_for(opa_url)
        modules = {POLICY_ID_PREFIX + rel: source for rel, source in program.modules}
        sidecar.push(Pushed(bundle.revision, modules, dict(program.data)))
        return cls(sidecar, bundle.revision, timeout_ms)

    def reload(self, bundle: Bundle) -> OpaServerEngine:
        """Push ``bundle`` to the same server; this engine's decisions then carry its revision."""
        return OpaServerEngine.from_bundle(bundle, opa_url=self._sidecar.url, timeout_ms=self._timeout_ms)

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def url(self) -> str:
        return self._sidecar.url

    def decide(self, path: str, input_doc: Mapping[str, Any]) -> PolicyDecision:
        try:
            value, revision = self._evaluate(path, input_doc)
        except _Failed as failed:
            return self._failed(path, self._sidecar.revision or self._revision, failed.failure)
        decision = decision_of(path, revision, value)
        if isinstance(decision, Failure):
            if value is None:  # every gateway rule has a default: has the server lost our modules?
                self._sidecar.resync_soon(verify=True)
            return self._failed(path, revision, decision)
        return decision

    def query(self, path: str, input_doc: Mapping[str, Any]) -> Any:
        try:
            value, _ = self._evaluate(path, input_doc)
        except _Failed as failed:
            self._log(path, failed.failure)
            raise PolicyEngineError(f"policy {path}: {failed.failure.message}") from None
        if value is None:
            self._sidecar.resync_soon(verify=True)
            self._log(path, Failure("undefined", "policy result is undefined"))
            raise PolicyEngineError(f"policy {path}: result is undefined")
        return value

    def _evaluate(self, path: str, input_doc: Mapping[str, Any]) -> tuple[Any, str]:
        """The rule's value (None if undefined) and the revision that produced it."""
        try:
            rule_reference(path)
            plain = plain_input(input_doc)
        except InputError as exc:
            raise _Failed("bad_input", str(exc)) from None
        deadline = self._timeout_ms / 1000
        try:
            with self._sidecar.reading(deadline) as pushed:
                if pushed is None:
                    self._sidecar.resync_soon()
                    raise _Failed("unsynchronised", "the OPA server's policies are in an unknown state")
                body = self._post(path, plain)
                revision = pushed.revision
        except TimeoutError:
            raise _Failed("timeout", "a policy push held the OPA server past the timeout") from None
        if not isinstance(body, dict):
            raise _Failed("bad_response", "the OPA server's answer is not a JSON object")
        return body.get("result"), revision

    def _post(self, path: str, plain: Any) -> Any:
        from requests import exceptions as http  # loaded with opa-python-client by the sidecar

        try:
            return self._client.query_rule(plain, path)
        except http.Timeout:
            raise _Failed("timeout", f"no answer from the OPA server within {self._timeout_ms} ms") from None
        except http.ConnectionError:
            raise _Failed("unreachable", f"cannot connect to the OPA server at {self.url}") from None
        except http.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "?"
            raise _Failed("http_status", f"the OPA server answered HTTP {status}") from None
        except http.RequestException:  # a body that is not JSON, a broken connection mid-answer
            raise _Failed("bad_response", "the OPA server's answer is not JSON") from None

    def _failed(self, path: str, revision: str, failure: Failure) -> PolicyDecision:
        self._log(path, failure)
        return PolicyDecision(
            allow=False,
            reasons=(UNAVAILABLE_REASON,),
            revision=revision,
            path=path,
            error=failure.message,
            failure=failure.kind,
        )

    def _log(self, path: str, failure: Failure) -> None:
        log.warning(
            "policy_engine_failed", engine="opa", path=path, failure=failure.kind, error=failure.message
        )
