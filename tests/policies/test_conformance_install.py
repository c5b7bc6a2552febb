"""The install wiring of the conformance suite: the README's test command installs real OPA's
engine, and CI runs exactly that command, so the suite cannot silently go missing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BINDINGS = "opa-golib-python-bindings==0.4.4"


def readme_test_command() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.+?)\n```", section)
    return next(c for c in commands if "pytest" in c)


def test_the_readme_test_command_installs_real_opas_engine() -> None:
    """The documented test command installs the OPA bindings (ignoring their Python range) before pytest."""
    command = readme_test_command()
    assert f"--ignore-requires-python {BINDINGS}" in command
    assert command.index(BINDINGS) < command.index("pytest")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    """.ci/run holds the README's test command as one line, character for character."""
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert readme_test_command() in lines
