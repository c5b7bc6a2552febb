"""The shipped Rego tests, run through run_policy_tests, and how the runner reports outcomes."""

from __future__ import annotations

import io
import re
from pathlib import Path

from policy_testkit import copy_bundle, write_module

from gateway.policy import run_policy_tests, shipped_bundle_dir


def test_shipped_rego_tests_all_pass() -> None:
    """Every test_* rule beside the shipped policies passes, and each is reported."""
    out = io.StringIO()
    code = run_policy_tests(shipped_bundle_dir(), out)
    text = out.getvalue()
    assert code == 0, text
    summary = re.search(r"^(\d+) passed, 0 failed$", text, re.MULTILINE)
    assert summary is not None, text
    assert int(summary[1]) == text.count("\nPASS ") + text.startswith("PASS ")
    for module in ("query_test", "listing_test", "ingest_test", "audit_test", "lib_test"):
        assert f"PASS datashare.{module}." in text


def test_a_failing_rego_test_is_reported_by_name_and_fails_the_run(tmp_path: Path) -> None:
    """A test rule that is false or undefined is a FAIL line naming it and its file; exit 1."""
    root = copy_bundle(tmp_path)
    write_module(
        root,
        "datashare/extra_test.rego",
        "package datashare.extra_test\n\nimport rego.v1\n\nimport data.datashare.query\n\n"
        'test_police_may_query if {\n\tquery.decision.allow with input as {"principal": '
        '{"agency": "metro-police", "role": "analyst"}, "action": "query"}\n}\n\n'
        "test_trivially_true if true\n",
    )
    out = io.StringIO()
    code = run_policy_tests(root, out)
    text = out.getvalue()
    assert code == 1
    assert "FAIL datashare.extra_test.test_police_may_query (datashare/extra_test.rego)" in text
    assert "PASS datashare.extra_test.test_trivially_true (datashare/extra_test.rego)" in text
    assert re.search(r"^\d+ passed, 1 failed$", text, re.MULTILINE)


def test_a_test_that_errors_fails_with_its_location(tmp_path: Path) -> None:
    """A test whose evaluation raises (a type error) fails and the line names file:line."""
    root = copy_bundle(tmp_path)
    write_module(
        root,
        "datashare/boom_test.rego",
        "package datashare.boom_test\n\nimport rego.v1\n\ntest_boom if {\n\tx := 1 / count([])\n\tx > 0\n}\n",
    )
    out = io.StringIO()
    code = run_policy_tests(root, out)
    assert code == 1
    assert re.search(
        r"FAIL datashare\.boom_test\.test_boom .*datashare/boom_test\.rego:6:\d+", out.getvalue()
    )


def test_a_bundle_that_does_not_compile_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    """A syntax error in any module, tests included, stops the run with exit 2 and file:line."""
    root = copy_bundle(tmp_path)
    write_module(root, "datashare/broken_test.rego", "package datashare.broken_test\n\ntest_x if {\n")
    out = io.StringIO()
    assert run_policy_tests(root, out) == 2
    assert "datashare/broken_test.rego:4:" in out.getvalue()
    assert "Stack backtrace" not in out.getvalue()


def test_a_missing_bundle_exits_2(tmp_path: Path) -> None:
    """A directory that is not a bundle is a load failure, not a test failure."""
    out = io.StringIO()
    assert run_policy_tests(tmp_path / "nowhere", out) == 2
    assert "not a directory" in out.getvalue()
