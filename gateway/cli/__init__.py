"""The ``gateway`` command line: operator, analyst and auditor commands in one place."""

from gateway.cli._main import main

__all__ = ["main"]
