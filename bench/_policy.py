"""``policy``: what one policy decision costs the gateway, with the bare engine call beside it.

The shipped bundle is copied to a temporary directory and grown to ``--agreements`` agreements:
each synthetic one is the shipped ``ag-2026-001`` with its own id, and its own agency and dataset
standing in for ``health`` and ``ed_visits`` (a copy of that contract, owned by the new agency).
Nothing generated here is ever written under ``policies/``.

Per decision, in this one process and thread, timed one call at a time after a warm-up:

- ``gateway``: what a handler does for it (gateway/server/_query.py, _ingest.py): build the
  policy input from the request context (``policy_input``, and for a query ``policy_request``
  from the validated spec), then ``PolicyEngine.decide`` (``query`` for the listing) of the
  embedded engine, with its checks of the input and of the result;
- ``bare``: the same input document (built once, untimed) and rule straight on a regorus engine
  built from the same program: ``set_input`` + ``eval_rule``, no wrapper;
- ``trivial``: a regorus engine holding only ``allow := true``, the floor of any engine call.

Decisions: a query that is allowed (the common case), one that is denied (wrong purpose: the
policy then also works out every reason), an agent's ingest, and an analyst's dataset listing.
"""

from __future__ import annotations

import copy
import gc
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import regorus
import yaml

from gateway._pb import query_pb2
from gateway.catalogue import Catalogue
from gateway.identity import Principal
from gateway.policy import (
    INGEST_RULE,
    LISTING_RULE,
    QUERY_RULE,
    EmbeddedEngine,
    shipped_bundle_dir,
)
from gateway.policy._compile import compile_modules, plain_input, rule_reference
from gateway.query import validate_request
from gateway.query._validate import policy_request
from gateway.server._app import checked_bundle
from gateway.server._context import RequestContext
from gateway.server._state import policy_input

TEMPLATE = "ag-2026-001"
TARGET_P50_US = 200.0
TARGET_P99_US = 1000.0
WARMUP = 200
TRUST_DOMAIN = "datashare.local"


@dataclass(frozen=True)
class Timing:
    p50_us: float
    p99_us: float
    mean_us: float
    max_us: float


@dataclass(frozen=True)
class DecisionRow:
    decision: str
    outcome: str  # what the gateway's call decided: allow, deny, or listed:N
    gateway: Timing
    bare: Timing
    ratio_p50: float  # gateway p50 / bare p50: what the wrapper and input building add


def synthetic_bundle(source: Path, target: Path, agreements: int) -> Path:
    """``source`` (a bundle holding the shipped agreement) copied to ``target`` with
    ``agreements - 1`` synthetic agreements, agencies and datasets added."""
    shutil.copytree(source, target)
    paths = {name: target / name / "data.yaml" for name in ("agreements", "agencies", "catalogue")}
    docs = {name: yaml.safe_load(path.read_text()) for name, path in paths.items()}
    template = docs["agreements"][TEMPLATE]
    contract = docs["catalogue"]["datasets"]["ed_visits"]
    for number in range(1, agreements):
        agency, dataset = f"bench-agency-{number:02d}", f"bench_ds_{number:02d}"
        docs["agencies"][agency] = {"title": f"Synthetic agency {number}"}
        docs["catalogue"]["datasets"][dataset] = {**copy.deepcopy(contract), "owner": agency}
        terms = _renamed(copy.deepcopy(template), {"health": agency, "ed_visits": dataset})
        docs["agreements"][f"ag-bench-{number:03d}"] = {**terms, "title": f"Synthetic agreement {number}"}
    for name, path in paths.items():
        path.write_text(yaml.safe_dump(docs[name], sort_keys=False))
    return target


def _renamed(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return names.get(value, value)
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _renamed(v, names) for k, v in value.items()}
    return value


def _percentiles(samples_ns: list[int]) -> Timing:
    ordered = sorted(samples_ns)
    return Timing(
        p50_us=statistics.median(ordered) / 1000,
        p99_us=ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] / 1000,
        mean_us=statistics.fmean(ordered) / 1000,
        max_us=ordered[-1] / 1000,
    )


def _measure(calls: list[Callable[[], object]], decisions: int, rounds: int) -> list[Timing]:
    """Each call timed ``decisions`` times per round, the calls taking turns round by round so
    that whatever else the machine does falls on all of them; each figure is the median of the
    rounds' (DESIGN §12: medians of 3)."""
    per_call: list[list[Timing]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for call, timings in zip(calls, per_call, strict=True):
            for _ in range(WARMUP):
                call()
            samples = [0] * decisions
            gc.collect()
            for i in range(decisions):
                started = clock()
                call()
                samples[i] = clock() - started
            timings.append(_percentiles(samples))
    return [
        Timing(*(statistics.median(getattr(t, f) for t in timings) for f in Timing.__dataclass_fields__))
        for timings in per_call
    ]


def _context(agency: str, role: str, name: str) -> RequestContext:
    principal = Principal(TRUST_DOMAIN, agency, role, name)  # type: ignore[arg-type]
    return RequestContext(principal=principal, method="bench")


def _query_request(purpose: str) -> query_pb2.AggregateRequest:
    return query_pb2.AggregateRequest(
        agreement_id=TEMPLATE,
        purpose=purpose,
        dataset="ed_visits",
        measures=[
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUBJECTS),
            query_pb2.MeasureSpec(kind=query_pb2.MEASURE_KIND_SUM, field="length_of_stay_hours"),
        ],
        group_by=["district", "month"],
        filters=[query_pb2.ValueFilter(dimension="age_band", values=["25-34", "35-44"])],
        months=query_pb2.MonthRange(first="2026-01", last="2026-06"),
    )


@dataclass(frozen=True)
class _Case:
    name: str
    rule: str
    make_input: Callable[[], dict[str, Any]]  # what the handler builds for each request
    expected: str  # allow, deny, or "listed" for the listing


def _cases(catalogue: Catalogue) -> list[_Case]:
    analyst = _context("health", "analyst", "health-analyst")
    agent = _context("health", "agent", "health")
    cases = []
    for name, purpose, expected in (
        ("query allowed", "overdose-prevention", "allow"),
        ("query denied", "service-planning", "deny"),
    ):
        spec = validate_request(_query_request(purpose), catalogue)  # validation is not policy: untimed

        def query_input(spec: Any = spec, purpose: str = purpose) -> dict[str, Any]:
            return policy_input(analyst, "query", policy_request(spec, TEMPLATE, purpose))

        cases.append(_Case(name, QUERY_RULE, query_input, expected))
    ingest = {"dataset": "ed_visits", "contract_version": 1}
    cases.append(_Case("ingest", INGEST_RULE, lambda: policy_input(agent, "ingest", ingest), "allow"))
    cases.append(_Case("listing", LISTING_RULE, lambda: policy_input(analyst, "list_datasets", {}), "listed"))
    return cases


def run_policy(
    agreements: int, decisions: int, source: Path | None = None, rounds: int = 3
) -> dict[str, object]:
    """Time the decisions on ``source`` (the shipped bundle by default) grown to ``agreements``."""
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as tmp:
        # checked as the gateway checks it: agreements it would refuse to load measure nothing
        bundle, catalogue = checked_bundle(
            synthetic_bundle(source or shipped_bundle_dir(), Path(tmp) / "bundle", agreements)
        )
    engine = EmbeddedEngine.from_bundle(bundle)
    _, bare = compile_modules(bundle.policy_modules, bundle.data)  # the same program, no wrapper
    rows = [_row(case, engine, bare, decisions, rounds) for case in _cases(catalogue)]

    trivial = regorus.Engine()
    trivial.add_policy("trivial.rego", "package trivial\n\nallow := true\n")
    trivial.set_input({})
    query = rows[0]
    return {
        "engine": "embedded (regorus)",
        "agreements": agreements,
        "decisions": decisions,
        "rounds": rounds,
        "revision": bundle.revision,
        "rows": [asdict(r) for r in rows],
        "trivial": asdict(_measure([lambda: trivial.eval_rule("data.trivial.allow")], decisions, rounds)[0]),
        "target": {"p50_us": TARGET_P50_US, "p99_us": TARGET_P99_US},
        "query_meets_target": query.gateway.p50_us <= TARGET_P50_US and query.gateway.p99_us <= TARGET_P99_US,
    }


def _row(case: _Case, engine: EmbeddedEngine, bare: Any, decisions: int, rounds: int) -> DecisionRow:
    if case.expected == "listed":

        def call() -> Any:
            return engine.query(case.rule, case.make_input())

        listed = call()
        outcome = f"listed:{len(listed) if isinstance(listed, list) else 0}"
        ok = outcome != "listed:0"
    else:

        def call() -> Any:
            return engine.decide(case.rule, case.make_input())

        decision = call()
        if decision.error:  # timing the wrapper's fail-closed path would measure no decision
            raise RuntimeError(f"{case.name}: {decision.error}")
        outcome = "allow" if decision.allow else "deny"
        ok = outcome == case.expected
    if not ok:
        raise RuntimeError(f"{case.name}: the policy decided {outcome}, so this would not measure it")
    doc, rule = plain_input(case.make_input()), rule_reference(case.rule)

    def bare_call() -> Any:
        bare.set_input(doc)
        return bare.eval_rule(rule)

    if bare_call() is None:
        raise RuntimeError(f"{case.name}: the bare engine found the rule undefined")
    gateway, raw = _measure([call, bare_call], decisions, rounds)
    return DecisionRow(case.name, outcome, gateway, raw, gateway.p50_us / raw.p50_us)


def format_policy(result: dict[str, object]) -> str:
    header = (
        f"{'decision':<14} {'outcome':<9} {'gateway p50/p99 µs':>19} {'bare p50/p99 µs':>16} {'ratio':>6}"
    )
    counts = (
        f"{result['agreements']} agreements, {result['decisions']} timed calls each, "
        f"median of {result['rounds']} rounds"
    )
    lines = [
        f"{counts} (bundle {result['revision']})",
        header,
        "-" * len(header),
    ]
    rows = result["rows"]
    assert isinstance(rows, list)
    for row in rows:
        g, b = row["gateway"], row["bare"]
        lines.append(
            f"{row['decision']:<14} {row['outcome']:<9} {g['p50_us']:>9.1f}/{g['p99_us']:<9.1f} "
            f"{b['p50_us']:>7.1f}/{b['p99_us']:<8.1f} {row['ratio_p50']:>6.2f}"
        )
    trivial = result["trivial"]
    assert isinstance(trivial, dict)
    target = result["target"]
    assert isinstance(target, dict)
    lines.append(
        f"trivial rule (regorus floor): p50 {trivial['p50_us']:.1f} µs, p99 {trivial['p99_us']:.1f} µs"
    )
    verdict = "meets" if result["query_meets_target"] else "misses"
    lines.append(
        f"allowed query {verdict} the target: p50 <= {target['p50_us']:.0f} µs, "
        f"p99 <= {target['p99_us']:.0f} µs"
    )
    return "\n".join(lines)


def print_policy(result: dict[str, object], *, as_json: bool) -> None:
    print(json.dumps(result, indent=2) if as_json else format_policy(result))
