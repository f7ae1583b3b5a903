"""The dependency direction holds: the core runs without the TUI, the schema without runtimes."""

from __future__ import annotations

import subprocess
import sys

import pytest


def modules_loaded_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return set(result.stdout.split())


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        ("import lab.scenario.loader", {"docker", "aiosmtpd", "textual", "tui"}),
        ("import lab.topology", {"docker", "aiosmtpd", "textual", "tui"}),
        ("import lab.cli", {"textual", "tui", "docker"}),
        ("import lab.runtime.local, lab.runs, lab.verify", {"textual", "tui", "docker"}),
    ],
)
def test_forbidden_imports(statement: str, forbidden: set[str]) -> None:
    loaded = modules_loaded_by(statement)
    assert not {name for name in loaded if name.split(".")[0] in forbidden}
