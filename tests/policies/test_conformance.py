"""Conformance (issue 4 item 5, DESIGN §8): the embedded engine (regorus) and real OPA's engine
(opa-golib-python-bindings, OPA's Go evaluator in-process) take the same decision on every
generated input, and the bundle's own Rego tests pass on real OPA too.

"The same decision" is the whole document: allow, every reason in order, the obligations and the
agreement, compared as canonical JSON so that 1, 1.0 and true are three different answers. A
failure prints the input and both documents. The bindings are a test dependency: if they are
missing the suite fails, because a skipped conformance suite would hide a broken install.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from conformance_inputs import CATEGORIES, POLICIES, SHIPPED, VARIANTS, Case, generate, variant_data

from gateway.errors import PolicyEngineError
from gateway.policy import Bundle, EmbeddedEngine, run_policy_tests, shipped_bundle_dir

INSTALL = "pip install --ignore-requires-python opa-golib-python-bindings==0.4.4"
MIN_CASES = 500
_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]+)\b", re.MULTILINE)
_PACKAGE = re.compile(r"^package\s+([A-Za-z0-9_.]+)", re.MULTILINE)


def opa_engine(modules: dict[str, str], data: Any) -> Any:
    """Real OPA with these modules and data; fails (never skips) when the bindings are missing."""
    try:
        from opa_bindings import OpaEngine
    except ImportError:
        pytest.fail(f"real OPA's engine is not installed; the conformance suite needs it: {INSTALL}")
    engine = OpaEngine()
    for rel, source in sorted(modules.items()):
        engine.add_policy(rel, source)
    engine.add_data(data)
    return engine


@dataclass(frozen=True)
class Outcome:
    """What an engine made of one input: a value (as canonical JSON), undefined, or an error."""

    kind: str  # "value", "undefined" or "error"
    text: str  # the canonical JSON of the value, or the error's message

    def same_as(self, other: Outcome) -> bool:
        # Error messages differ between engines; that both failed (and so denied) is what counts.
        return self.kind == other.kind and (self.kind != "value" or self.text == other.text)


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)


def on_embedded(engine: EmbeddedEngine, case: Case) -> Outcome:
    try:
        return Outcome("value", canonical(engine.query(case.path, case.input)))
    except PolicyEngineError as exc:
        kind = "undefined" if exc.message.endswith("result is undefined") else "error"
        return Outcome(kind, exc.message)


def on_opa(engine: Any, case: Case) -> Outcome:
    from opa_bindings.engine import OpaError, OpaUndefinedError

    try:
        return Outcome("value", canonical(engine.eval_document(case.path.replace("/", "."), case.input)))
    except OpaUndefinedError as exc:
        return Outcome("undefined", str(exc))
    except OpaError as exc:
        return Outcome("error", str(exc))


@dataclass(frozen=True)
class Result:
    case: Case
    embedded: Outcome
    opa: Outcome

    @property
    def agree(self) -> bool:
        return self.embedded.same_as(self.opa)

    @property
    def allowed(self) -> bool | None:
        """Whether the decision allows (a listing "allows" when it lists anything)."""
        if self.opa.kind != "value":
            return None
        value = json.loads(self.opa.text)
        return bool(value) if isinstance(value, list) else value.get("allow") is True

    def describe(self) -> str:
        case = self.case
        return (
            f"[{case.policy}/{case.category}] {case.note} (bundle {case.bundle}, rule {case.path})\n"
            f"  input:    {canonical(case.input)}\n"
            f"  embedded: {self.embedded.kind} {self.embedded.text}\n"
            f"  real OPA: {self.opa.kind} {self.opa.text}"
        )


@pytest.fixture(scope="module")
def bundles(shipped_bundle: Bundle) -> dict[str, Bundle]:
    data = json.loads(json.dumps(shipped_bundle.data))
    return {SHIPPED: shipped_bundle, VARIANTS: dataclasses.replace(shipped_bundle, data=variant_data(data))}


@pytest.fixture(scope="module")
def cases(shipped_bundle: Bundle) -> list[Case]:
    return generate(json.loads(json.dumps(shipped_bundle.data)))


@pytest.fixture(scope="module")
def results(bundles: dict[str, Bundle], cases: list[Case]) -> list[Result]:
    embedded = {name: EmbeddedEngine.from_bundle(bundle) for name, bundle in bundles.items()}
    opa = {name: opa_engine(bundle.policy_modules, bundle.data) for name, bundle in bundles.items()}
    return [
        Result(case, on_embedded(embedded[case.bundle], case), on_opa(opa[case.bundle], case))
        for case in cases
    ]


def report(results: list[Result]) -> str:
    """Per policy and category: inputs, allowed, denied, disagreements."""
    rows: dict[tuple[str, str], Counter[str]] = {}
    for result in results:
        row = rows.setdefault((result.case.policy, result.case.category), Counter())
        row["inputs"] += 1
        row["allow" if result.allowed else "deny"] += 1
        row["disagree"] += not result.agree
    lines = [f"{'policy':<8} {'category':<22} {'inputs':>6} {'allow':>6} {'deny':>6} {'disagree':>8}"]
    for (policy, category), row in sorted(rows.items()):
        lines.append(
            f"{policy:<8} {category:<22} {row['inputs']:>6} {row['allow']:>6} {row['deny']:>6} "
            f"{row['disagree']:>8}"
        )
    disagreements = sum(not r.agree for r in results)
    lines.append(f"{len(results)} decisions, {disagreements} disagreements between regorus and real OPA")
    return "\n".join(lines)


def test_the_embedded_engine_decides_every_generated_input_exactly_like_real_opa(
    results: list[Result], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every generated decision document is identical on regorus and on real OPA."""
    with capsys.disabled():
        print("\nconformance, regorus vs real OPA:\n" + report(results))
    disagreements = [r for r in results if not r.agree]
    shown = "\n".join(r.describe() for r in disagreements[:10])
    assert not disagreements, f"{len(disagreements)} disagreements (first 10):\n{shown}"


def test_every_generated_input_gets_a_decision_on_both_engines(results: list[Result]) -> None:
    """No input, however malformed, leaves a rule undefined or makes an engine fail: the policies
    are total, so a deny always comes with its reasons rather than the fail-closed fallback."""
    failed = [r for r in results if r.embedded.kind != "value" or r.opa.kind != "value"]
    shown = "\n".join(r.describe() for r in failed[:10])
    assert not failed, f"{len(failed)} inputs without a decision (first 10):\n{shown}"


def test_the_generated_inputs_cover_every_policy_category_and_outcome(results: list[Result]) -> None:
    """At least 500 inputs, every policy and every category of issue 4 among them, and both
    outcomes on every policy and in the valid and wrong-types categories: the suite cannot pass
    by comparing only denials."""
    assert len(results) >= MIN_CASES
    categories = Counter(r.case.category for r in results)
    assert set(categories) == set(CATEGORIES), categories
    assert min(categories.values()) >= 10, categories
    for policy in POLICIES.values():
        outcomes = Counter(r.allowed for r in results if r.case.policy == policy)
        assert outcomes[True] >= 5, (policy, outcomes)
        assert outcomes[False] >= 5, (policy, outcomes)
    valid = Counter(r.allowed for r in results if r.case.category == "valid")
    assert valid[True] > valid[False], valid
    assert {True, False} <= {r.allowed for r in results if r.case.category == "wrong-types"}
    assert {r.case.bundle for r in results} == {SHIPPED, VARIANTS}


def test_the_generated_inputs_are_the_same_on_every_run(shipped_bundle: Bundle, cases: list[Case]) -> None:
    """The generator is seeded: a failing input can be replayed by number."""
    again = generate(json.loads(json.dumps(shipped_bundle.data)))
    assert [canonical(c.input) for c in again] == [canonical(c.input) for c in cases]


# --- the bundle's Rego tests on real OPA -------------------------------------------------------


def rego_tests() -> Iterator[str]:
    """``pkg.test_x`` for every test rule of the shipped bundle, read from the sources."""
    seen: set[str] = set()
    for path in sorted(shipped_bundle_dir().rglob("*_test.rego")):
        source = path.read_text()
        package = _PACKAGE.search(source)
        assert package is not None, path
        for name in _TEST_RULE.findall(source):
            rule = f"{package[1]}.{name}"
            if rule not in seen:
                seen.add(rule)
                yield rule


@pytest.fixture(scope="module")
def opa_with_tests(shipped_bundle: Bundle) -> Any:
    return opa_engine(dict(shipped_bundle.modules), shipped_bundle.data)


@pytest.mark.parametrize("rule", list(rego_tests()))
def test_the_shipped_rego_test_passes_on_real_opa(opa_with_tests: Any, rule: str) -> None:
    """The Rego test rule evaluates to true on real OPA, as it does on the embedded engine."""
    from opa_bindings.engine import OpaError

    try:
        value = opa_with_tests.eval_document(rule, None)
    except OpaError as exc:
        pytest.fail(f"{rule} on real OPA: {exc}")
    assert value is True, f"{rule} on real OPA: {value!r}"


def test_both_engines_run_the_same_rego_tests() -> None:
    """`gateway policy test` (the embedded engine) runs exactly the test rules run on OPA above."""
    out = io.StringIO()
    run_policy_tests(shipped_bundle_dir(), out)
    embedded = set(re.findall(r"^(?:PASS|FAIL) (\S+)", out.getvalue(), re.MULTILINE))
    assert embedded == set(rego_tests())
    assert len(embedded) > 0
