"""What `gateway policy test` and `gateway policy check` run: the bundle's own Rego tests, and a
review of the bundle before it is deployed (every module compiles, the data holds together).

Both write plain lines to ``out`` and return a process exit code.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway.errors import ConfigError
from gateway.policy._bundle import Bundle, load_bundle, validate_bundle
from gateway.policy._compile import compile_modules, data_problem, defined_rules, engine_message, test_rules
from gateway.policy._embedded import GATEWAY_RULES
from gateway.policy._schema import data_problems


def run_policy_tests(root: Path, out: TextIO) -> int:
    """Evaluate every ``test_*`` rule of the bundle (tests included) with its data.

    One line per test, then "N passed, M failed". Exit code 0 if all pass, 1 if any fails,
    2 if the bundle does not load or compile (the message names file:line)."""
    try:
        bundle = load_bundle(root)
        _, engine = compile_modules(bundle.modules, bundle.data)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=out)
        return 2
    passed = failed = 0
    for rule, file in test_rules(engine):
        try:
            outcome = "PASS" if engine.eval_rule("data." + rule.replace("/", ".")) is True else "FAIL"
            detail = ""
        except RuntimeError as exc:  # a test that errors has failed; say where
            outcome, detail = "FAIL", f": {engine_message(exc)}"
        if outcome == "PASS":
            passed += 1
        else:
            failed += 1
        print(f"{outcome} {rule.replace('/', '.')} ({file}){detail}", file=out)
    if passed + failed == 0:
        print(f"no test_ rules found under {root}", file=out)
    print(f"{passed} passed, {failed} failed", file=out)
    return 1 if failed else 0


def check_bundle(root: Path, out: TextIO) -> int:
    """Review a bundle before deployment; print its revision and return 0, or print every
    problem found (each naming the file and line, or the agreement and key) and return 1."""
    try:
        bundle = load_bundle(root)
    except ConfigError as exc:
        print(f"error: {exc.message}", file=out)
        return 1
    problems = list(bundle_problems(bundle))
    for problem in problems:
        print(f"error: {problem}", file=out)
    if problems:
        print(f"policy bundle {root}: {len(problems)} problem(s); not deployable", file=out)
        return 1
    agreements = bundle.data.get("agreements") or {}
    datasets = (bundle.data.get("catalogue") or {}).get("datasets") or {}
    print(
        f"policy bundle {root}: revision {bundle.revision} "
        f"({len(bundle.modules)} modules, {len(agreements)} agreements, {len(datasets)} datasets)",
        file=out,
    )
    return 0


def bundle_problems(bundle: Bundle) -> Iterator[str]:
    """Everything wrong with the bundle: data first (file:line: data.path: problem), then
    modules (file:line:col: problem)."""
    data_problems = validate_bundle(bundle)
    yield from data_problems
    unusable = data_problem(bundle.data)
    if unusable and not any(f" {unusable.split(': ', 1)[0]}:" in p for p in data_problems):
        yield unusable
    try:
        # Modules compile without the data when the data itself is unusable, so that both kinds
        # of problem are reported in one run.
        _, engine = compile_modules(bundle.modules, {} if unusable else bundle.data)
    except ConfigError as exc:
        yield exc.message
        return
    for rule in sorted(set(GATEWAY_RULES) - defined_rules(engine)):
        yield f"the bundle defines no rule {rule}, which the gateway consults"


def agreement_problems(data: Mapping[str, Any]) -> list[str]:
    """Problems of the data document, without file and line (for data built in code)."""
    return [problem.dotted + ": " + problem.message for problem in data_problems(data)]
