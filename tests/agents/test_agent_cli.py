"""The `agent` command line: help, usage errors, and the last line of defence."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from agents import cli


def test_top_level_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent --help` exits 0 and lists every command and the exit codes."""
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert command in out
    assert "exit codes" in out
    assert "agent push --config" in out


def test_push_help_explains_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent push --help` exits 0 and explains every option with an example."""
    assert cli.main(["push", "--help"]) == 0
    out = capsys.readouterr().out
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = [opt for action in sub.choices["push"]._actions for opt in action.option_strings]
    assert {"--config", "--json", "--quiet"} <= set(options)
    for option in options:
        assert option in out
    assert out.count("example") >= 3
    assert "rejects.csv" in out


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent` alone exits 2 with a usage message."""
    assert cli.main([]) == 2
    assert "usage: agent" in capsys.readouterr().err


def test_push_without_config_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """`agent push` without --config exits 2 naming the option."""
    assert cli.main(["push"]) == 2
    assert "--config" in capsys.readouterr().err


def test_unexpected_error_prints_one_line_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug surfaces as 'internal error: <type>' and exit 1, never a traceback or its message."""

    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("AB123456C should never be printed")

    name, description, add, _run = cli.COMMANDS["push"]
    monkeypatch.setitem(cli.COMMANDS, "push", (name, description, add, broken))

    assert cli.main(["push", "--config", "x.toml"]) == 1

    captured = capsys.readouterr()
    assert captured.err == "agent: internal error: RuntimeError\n"
    assert "AB123456C" not in captured.out + captured.err


def test_runs_as_a_module(tmp_path: pytest.TempPathFactory) -> None:
    """`python -m agents --help` works as the installed `agent` script does."""
    proc = subprocess.run(
        [sys.executable, "-m", "agents", "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0
    assert "push" in proc.stdout


def test_agent_package_never_imports_gateway() -> None:
    """The agent is its own deployable: importing all of it loads no gateway module."""
    code = (
        "import sys, agents, agents.cli, agents._pipeline;"
        "bad = [m for m in sys.modules if m == 'gateway' or m.startswith('gateway.')];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
