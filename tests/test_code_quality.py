"""The project's own checks are part of the suite: ruff (lint and format) and strict mypy."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SOURCES = ["lab", "tui", "tests", "benchmarks"]


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_lint() -> None:
    result = run("ruff", "check", "--output-format", "concise", *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = run("ruff", "format", "--check", *SOURCES)
    assert result.returncode == 0, f"run `ruff format {' '.join(SOURCES)}`\n{result.stdout}"


def test_mypy_strict() -> None:
    result = run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


MAX_MODULE_LINES = 500


def test_modules_stay_small_and_say_what_they_own() -> None:
    """A newcomer can hold each module in their head: at most 500 lines, a docstring first."""
    too_long, undocumented = [], []
    for path in sorted((ROOT / "lab").rglob("*.py")) + sorted((ROOT / "tui").rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{name} ({text.count(chr(10))} lines)")
        if text.strip() and ast.get_docstring(ast.parse(text)) is None:
            undocumented.append(name)
    assert too_long == [], f"split by concept: {too_long}"
    assert undocumented == [], f"open with a docstring saying what the module owns: {undocumented}"
