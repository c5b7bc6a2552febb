"""check_bundle: a bundle is deployable only if every module compiles and the data holds together;
each problem names the file and line, or the agreement and key."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from policy_testkit import AGREEMENT, copy_bundle, edit_agreement, edit_yaml, write_module

from gateway.errors import ConfigError
from gateway.policy import check_bundle, load_bundle, load_checked_bundle, shipped_bundle_dir


def check(root: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = check_bundle(root, out)
    return code, out.getvalue()


def test_the_shipped_bundle_passes_and_prints_its_revision() -> None:
    """The shipped bundle is deployable; the report carries the bundle revision."""
    code, text = check(shipped_bundle_dir())
    assert code == 0, text
    assert f"revision {load_bundle(shipped_bundle_dir()).revision}" in text
    assert "error" not in text


@pytest.mark.parametrize(
    ("source", "line", "words"),
    [
        pytest.param(
            "package datashare.extra\n\nimport rego.v1\n\nallow if {\n", 6, "expecting", id="syntax"
        ),
        pytest.param(
            "package datashare.extra\n\nimport rego.v1\n\nallow if {\n\tcrypto.sha999(input.x)\n}\n",
            6,
            "unknown function crypto.sha999",
            id="unknown-builtin",
        ),
        pytest.param(
            "package datashare.extra\n\nimport rego.v1\n\nimport data.datashare.lib\n\n"
            'x := lib.no_such_helper("a")\n',
            7,
            "unknown function lib.no_such_helper",
            id="unknown-bundle-function",
        ),
        pytest.param(
            "package datashare.extra\n\nallow {\n\tinput.x == 1\n}\n",
            3,
            "`if` keyword is required",
            id="rego-v0",
        ),
        pytest.param(
            "package datashare.extra\n\nimport rego.v1\n\nxs := {x | some x in [1]; some x in [2]}\n",
            5,
            "used before definition",
            id="scoping",
        ),
    ],
)
def test_a_broken_module_fails_naming_file_and_line(
    tmp_path: Path, source: str, line: int, words: str
) -> None:
    """Syntax errors, unknown functions, Rego v0 syntax and scoping errors each fail the check
    with the module's path and the line at fault, and no Rust backtrace."""
    root = copy_bundle(tmp_path)
    write_module(root, "datashare/extra.rego", source)
    code, text = check(root)
    assert code == 1
    assert f"datashare/extra.rego:{line}:" in text, text
    assert words in text
    assert "Stack backtrace" not in text


def test_a_broken_test_module_fails_the_check_too(tmp_path: Path) -> None:
    """Test modules ship with the bundle, so they must compile as well."""
    root = copy_bundle(tmp_path)
    write_module(root, "datashare/query_test.rego", "package datashare.query_test\n\ntest_x {\n\ttrue\n}\n")
    code, text = check(root)
    assert code == 1
    assert "datashare/query_test.rego:3:" in text


def test_a_bundle_missing_a_gateway_rule_fails(tmp_path: Path) -> None:
    """Every rule the gateway consults must be defined; the missing one is named."""
    root = copy_bundle(tmp_path)
    (root / "datashare" / "audit.rego").unlink()
    (root / "datashare" / "audit_test.rego").unlink()
    code, text = check(root)
    assert code == 1
    assert "datashare/audit/decision" in text


@pytest.mark.parametrize(
    ("fields", "key", "words"),
    [
        pytest.param({"k": 5}, "k", "at least 10 (the consortium floor)", id="k-below-floor"),
        pytest.param({"k": "10"}, "k", "whole number", id="k-not-a-number"),
        pytest.param({"round_to": 0}, "round_to", "at least 1", id="round-to-zero"),
        pytest.param({"max_cells": -1}, "max_cells", "at least 1", id="max-cells"),
        pytest.param(
            {"datasets": ["ed_visits", "tax_returns"]},
            "datasets",
            "'tax_returns' is not a dataset",
            id="dataset",
        ),
        pytest.param({"valid_until": "2026-02-30"}, "valid_until", "'YYYY-MM-DD'", id="impossible-date"),
        pytest.param({"valid_from": "1 Jan 2026"}, "valid_from", "'YYYY-MM-DD'", id="bad-date-format"),
        pytest.param({"valid_until": "2025-12-31"}, "valid_until", "before valid_from", id="dates-reversed"),
        pytest.param({"status": "paused"}, "status", "draft, active, suspended, revoked", id="status"),
        pytest.param(
            {"receiving_agencies": ["health", "tax-office"]},
            "receiving_agencies",
            "'tax-office'",
            id="agency",
        ),
        pytest.param({"measures": ["subjects", "sum:income"]}, "measures", "'sum:income'", id="measure"),
        pytest.param({"dimensions": ["district", "postcode"]}, "dimensions", "'postcode'", id="dimension"),
        pytest.param({"filters": ["month"]}, "filters", "'month'", id="time-filter"),
        pytest.param({"purposes": []}, "purposes", "list of unique non-empty names", id="no-purposes"),
        pytest.param(
            {"providing_agencies": ["health"]}, "datasets", "'police_incidents' is owned by", id="owner"
        ),
        pytest.param(
            {"linkage": [{"datasets": ["ed_visits", "ed_visits"], "max_days": 30}]},
            "linkage[0].datasets",
            "two different datasets",
            id="link-pair",
        ),
        pytest.param(
            {"linkage": [{"datasets": ["ed_visits", "police_incidents"], "max_days": -1}]},
            "linkage[0].max_days",
            "0 or more",
            id="link-window",
        ),
    ],
)
def test_a_broken_agreement_fails_naming_agreement_and_key(
    tmp_path: Path, fields: dict[str, Any], key: str, words: str
) -> None:
    """Each problem of an agreement (schema or reference) fails the check naming the file, the
    line and the data path down to the key (and the item of a list)."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, **fields)
    code, text = check(root)
    assert code == 1
    where = re.escape(f"data.agreements.{AGREEMENT}.{key}")
    assert re.search(rf"^error: agreements/data\.yaml:\d+: {where}(\[\d+\])*:", text, re.MULTILINE), text
    assert words in text


def test_an_unquoted_date_is_named_once_with_its_key(tmp_path: Path) -> None:
    """YAML reads an unquoted date as a date object; the check says to quote it, by key."""
    root = copy_bundle(tmp_path)
    path = root / "agreements" / "data.yaml"
    path.write_text(path.read_text().replace('valid_until: "2028-12-31"', "valid_until: 2028-12-31"))
    code, text = check(root)
    assert code == 1
    assert text.count(f"data.agreements.{AGREEMENT}.valid_until:") == 1, text


def test_missing_and_unknown_keys_are_named(tmp_path: Path) -> None:
    """A required key that is absent and a key nobody reads (a typo) are both errors."""
    root = copy_bundle(tmp_path)

    def change(agreements: dict[str, Any]) -> None:
        del agreements[AGREEMENT]["purposes"]
        agreements[AGREEMENT]["round-to"] = 10

    edit_yaml(root / "agreements" / "data.yaml", change)
    code, text = check(root)
    assert code == 1
    assert f"data.agreements.{AGREEMENT}.purposes: missing" in text
    assert f"data.agreements.{AGREEMENT}: unknown key 'round-to'" in text


def test_a_broken_catalogue_fails_naming_the_path(tmp_path: Path) -> None:
    """Catalogue problems are reported with their data path (Catalogue.from_data's message)."""
    root = copy_bundle(tmp_path)

    def change(catalogue: dict[str, Any]) -> None:
        catalogue["datasets"]["ed_visits"]["owner"] = "nobody"

    edit_yaml(root / "catalogue" / "data.yaml", change)
    code, text = check(root)
    assert code == 1
    assert "data.catalogue.datasets.ed_visits.owner" in text


def test_unreadable_yaml_fails_naming_file_and_line(tmp_path: Path) -> None:
    """A data file that is not YAML fails the check with its path and line."""
    root = copy_bundle(tmp_path)
    (root / "agreements" / "data.yaml").write_text("ag-1:\n  title: [unclosed\n  status: active\n")
    code, text = check(root)
    assert code == 1
    assert "agreements/data.yaml:" in text


@pytest.mark.parametrize(
    ("fields", "path", "words"),
    [
        pytest.param(
            {"forbidden_combinations": [["age_band", "postcode"]]},
            "forbidden_combinations[0][1]",
            "'postcode' is not among the agreement's dimensions",
            id="combination-dimension",
        ),
        pytest.param(
            {"forbidden_combinations": [["age_band"]]},
            "forbidden_combinations[0]",
            "two or more different dimensions",
            id="combination-of-one",
        ),
        pytest.param(
            {"query_budget": {"queries": 100, "period": "fortnight"}},
            "query_budget.period",
            "day, week, month, year",
            id="budget-period",
        ),
        pytest.param(
            {"purposes": ["overdose-prevention", "curiosity"]},
            "purposes[1]",
            "'curiosity' is not a purpose in data.purposes",
            id="uncatalogued-purpose",
        ),
        pytest.param({"legal_basis": " "}, "legal_basis", "non-empty text", id="legal-basis"),
        pytest.param(
            {"dominance": {"n": 2, "percent": 95}}, "dominance.percent", "from 50 to 90", id="dominance-weak"
        ),
        pytest.param({"dominance": {"n": 0, "percent": 85}}, "dominance.n", "from 1 to 3", id="dominance-n"),
        pytest.param({"zeros": "hide"}, "zeros", "withhold or show", id="zeros"),
    ],
)
def test_new_agreement_terms_are_checked_at_file_and_line(
    tmp_path: Path, fields: dict[str, Any], path: str, words: str
) -> None:
    """Forbidden combinations, the query budget, catalogued purposes and the legal basis are
    checked like every other term, naming file, line and the item at fault."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, **fields)
    code, text = check(root)
    assert code == 1
    where = re.escape(f"data.agreements.{AGREEMENT}.{path}")
    assert re.search(rf"^error: agreements/data\.yaml:\d+: {where}: ", text, re.MULTILINE), text
    assert words in text


def test_the_line_named_is_the_line_of_the_bad_value(tmp_path: Path) -> None:
    """The line number points at the offending key in the file as written, comments and all."""
    root = copy_bundle(tmp_path)
    path = root / "agreements" / "data.yaml"
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("k:"))
    lines[at] = lines[at].replace("k: 10", "k: 9")
    path.write_text("\n".join(lines) + "\n")
    code, text = check(root)
    assert code == 1
    assert f"agreements/data.yaml:{at + 1}: data.agreements.{AGREEMENT}.k: " in text, text


def test_a_bundle_without_a_purpose_catalogue_is_refused(tmp_path: Path) -> None:
    """Purposes are enumerated by the consortium: a bundle without data.purposes is not deployable."""
    root = copy_bundle(tmp_path)
    (root / "purposes" / "data.yaml").unlink()
    code, text = check(root)
    assert code == 1
    assert "data.purposes: missing" in text


def test_a_catalogue_schema_problem_names_file_and_line(tmp_path: Path) -> None:
    """A contract that breaks the catalogue schema is named by file, line and data path."""
    root = copy_bundle(tmp_path)

    def change(catalogue: dict[str, Any]) -> None:
        catalogue["datasets"]["ed_visits"]["version"] = 0

    edit_yaml(root / "catalogue" / "data.yaml", change)
    code, text = check(root)
    assert code == 1
    assert re.search(r"catalogue/data\.yaml:\d+: data\.catalogue\.datasets\.ed_visits\.version: ", text), text


def test_the_gateway_refuses_to_load_a_bundle_that_fails_its_schema(tmp_path: Path) -> None:
    """load_checked_bundle (gateway start and reload) raises one ConfigError naming file and line."""
    root = copy_bundle(tmp_path)
    edit_agreement(root, k=5)
    with pytest.raises(ConfigError, match=r"agreements/data\.yaml:\d+: data\.agreements\.ag-2026-001\.k: "):
        load_checked_bundle(root)
