"""A fresh environment: `pip install -e .` without extras (the README's way, minus the
test extras), then a docker command.

Catches a runtime dependency that only the test extras happened to bring in
(`packaging` was one). Uses the same package index pip is configured with here.
"""

from __future__ import annotations

import os
import subprocess
import venv
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.docker
@pytest.mark.slow
def test_install_without_extras_then_verify_on_docker(
    tmp_path: Path, docker_client: Any, node_image: str
) -> None:
    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-e", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    result = subprocess.run(
        [str(home / "bin" / "smtplab"), "verify", "happy-path", "--backend", "docker"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # not the source tree: the installed package must stand alone
        env={
            **{key: value for key, value in os.environ.items() if key.startswith("DOCKER_")},
            "PATH": f"{home / 'bin'}:/usr/bin:/bin",
            "HOME": str(tmp_path),
            "SMTPLAB_STATE": str(tmp_path / "state"),
        },
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "ModuleNotFoundError" not in result.stderr
    assert "happy-path" in result.stdout
