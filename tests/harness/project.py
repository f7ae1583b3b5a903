"""A throwaway user project: test files written into a directory and run by a pytest
subprocess that loads the plugin by its entry point, as a user's own suite does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Outcome:
    """A finished inner pytest run."""

    returncode: int
    output: str


def run_pytest(
    directory: Path,
    files: dict[str, str],
    *args: str,
    python: str = sys.executable,
    timeout: float = 900,
) -> Outcome:
    """Write `files` (name -> source) into `directory` and run `python -m pytest` there."""
    for name, source in files.items():
        (directory / name).write_text(textwrap.dedent(source))
    result = subprocess.run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "-rA", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(result.returncode, result.stdout + result.stderr)
