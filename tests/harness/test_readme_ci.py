"""The README's "Use it in your CI" examples, run as a user runs them: a wheel of this
checkout installed (not editable) into a fresh virtual environment with pytest and nothing
else of ours, the README's files written into an empty project, and pytest run there. The
same file with a wrong assertion must fail with the lab's logs in its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.runtime.image import node_image_tag
from tests.harness.project import Outcome, run_pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Use it in your CI"

pytestmark = pytest.mark.slow


def readme_files() -> dict[str, str]:
    """The section's Python blocks, by the file name their first line gives."""
    text = (ROOT / "README.md").read_text()
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL):
        first, _, body = block.partition("\n")
        assert first.startswith("# "), f"a README example without a file name: {first}"
        files[first[2:].strip()] = body
    return files


def _run(command: list[str], cwd: Path) -> None:
    result = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh venv with only smtp-lab (a wheel of this checkout) and pytest installed."""
    scratch = tmp_path_factory.mktemp("package")
    source = scratch / "src"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    # A copy: building in the checkout would leave build/ behind.
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "-q", "--no-deps", "-w", str(scratch / "dist"), str(source)], scratch)
    [wheel] = (scratch / "dist").glob("smtp_lab-*.whl")
    venv = scratch / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], scratch)
    python = str(venv / "bin" / "python")
    _run([python, "-m", "pip", "install", "-q", str(wheel), "pytest"], scratch)
    return python


def run_readme(python: str, directory: Path, *args: str, files: dict[str, str]) -> Outcome:
    env_keys = [key for key in os.environ if key.startswith("SMTPLAB_")]
    assert not env_keys or all(key == "SMTPLAB_REQUIRE_DOCKER" for key in env_keys), env_keys
    return run_pytest(directory, files, *args, python=python)


def test_the_installed_package_carries_the_catalog_and_the_image_recipe(
    venv_python: str, tmp_path: Path
) -> None:
    listed = subprocess.run(
        [str(Path(venv_python).parent / "smtplab"), "validate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    unwrapped = "".join(listed.stdout.split())  # rich wraps long paths at the terminal width
    assert "site-packages/lab/_bundled/scenarios/happy-path.yaml" in unwrapped
    # The image an installed package builds is the one this checkout builds: same digest.
    code = "from lab.runtime.image import node_image_tag; print(node_image_tag())"
    installed = subprocess.run(
        [venv_python, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert installed == node_image_tag()


def test_readme_examples_pass_on_the_local_backend(venv_python: str, tmp_path: Path) -> None:
    result = run_readme(venv_python, tmp_path, "--smtplab-backend", "local", files=readme_files())
    assert result.returncode == 0, result.output
    assert "3 passed" in result.output


def test_a_wrong_assertion_fails_with_the_labs_logs(venv_python: str, tmp_path: Path) -> None:
    files = readme_files()
    assert 'assert msg["Subject"] == "Invoice 42"' in files["test_mail.py"]
    files["test_mail.py"] = files["test_mail.py"].replace(
        'assert msg["Subject"] == "Invoice 42"', 'assert msg["Subject"] == "Invoice 43"'
    )
    result = run_readme(venv_python, tmp_path, "--smtplab-backend", "local", files=files)
    assert result.returncode == 1, result.output
    assert "1 failed, 2 passed" in result.output
    assert "AssertionError" in result.output
    # The greylisting MX's own decision, from its log in the failing test's report.
    assert " mx log " in result.output
    assert "greylist" in result.output


@pytest.mark.docker
def test_readme_examples_pass_on_docker(venv_python: str, tmp_path: Path, node_image: str) -> None:
    del node_image  # the checkout's image; the installed package finds the same digest
    result = run_readme(venv_python, tmp_path, "--smtplab-backend", "docker", files=readme_files())
    assert result.returncode == 0, result.output
    assert "3 passed" in result.output
