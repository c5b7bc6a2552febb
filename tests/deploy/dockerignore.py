"""Docker's .dockerignore rules, to check a build context without a Docker engine.

Each line is a pattern (`*` within one path segment, `**` across segments, `?` one character),
cleaned like a path; a path is excluded when the last pattern matching it or one of its parent
folders is not negated (`!`). That is moby/patternmatcher's rule, which BuildKit applies."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, pattern) for each line of a .dockerignore file."""
    parsed = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        cleaned = posixpath.normpath(line.removeprefix("!").strip()).lstrip("/")
        parsed.append((negated, _regex(cleaned)))
    return parsed


def excluded(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the context path `relative` (a/b/c) is left out of the build context."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negated, pattern in patterns:
        if any(pattern.match(candidate) for candidate in candidates):
            result = not negated
    return result
