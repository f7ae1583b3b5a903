"""Users' own scenarios and CI reports, as a user runs them: `smtplab new` scaffolds a file
that validates and verifies, `validate` takes directories, `verify --junit` writes JUnit a
JUnit parser reads (one case per scenario), and the schema reference is current."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from junitparser import Failure, JUnitXml

from lab.catalog import load_catalog
from lab.cli.authoring import schema_markdown
from lab.config import settings
from lab.scenario.reference import models

ROOT = Path(__file__).resolve().parents[2]


def smtplab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SMTPLAB_BACKEND": "local", "SMTPLAB_STATE": str(cwd / "state")}
    return subprocess.run(
        [sys.executable, "-m", "lab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def test_new_scaffold_validates_and_verifies(tmp_path: Path) -> None:
    made = smtplab("new", "my-case", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "my-case.yaml").read_text()
    assert text.count("#") > 10  # commented for the user who edits it
    assert smtplab("validate", "my-case.yaml", cwd=tmp_path).returncode == 0
    verified = smtplab("verify", "my-case.yaml", cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "1 passed, 0 failed" in verified.stdout


@pytest.mark.parametrize(
    ("name", "message"),
    [("Bad Name", "is not a scenario id"), ("my-case", "exists already")],
)
def test_new_refuses_bad_names_and_existing_files(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "my-case.yaml").write_text("keep me\n")
    result = smtplab("new", name, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert (tmp_path / "my-case.yaml").read_text() == "keep me\n"


def test_validate_accepts_directories(tmp_path: Path) -> None:
    catalog = smtplab("validate", str(settings.shipped_scenarios_dir), cwd=tmp_path)
    assert catalog.returncode == 0, catalog.stderr
    assert catalog.stdout.count("ok  ") == len(list(settings.shipped_scenarios_dir.glob("*.yaml")))

    mine = tmp_path / "mine"
    mine.mkdir()
    assert smtplab("new", "good", "--dir", "mine", cwd=tmp_path).returncode == 0
    (mine / "typo.yaml").write_text(
        (mine / "good.yaml").read_text().replace("outcome: delivered", "outcom: delivered")
    )
    checked = smtplab("validate", "mine", cwd=tmp_path)
    assert checked.returncode == 2
    assert "ok  mine/good.yaml" in checked.stdout
    assert "typo.yaml:" in checked.stderr
    assert "outcom" in checked.stderr

    (tmp_path / "empty").mkdir()
    empty = smtplab("validate", "empty", cwd=tmp_path)
    assert empty.returncode == 2
    assert empty.stderr.strip() == "smtplab: empty: no scenario files (*.yaml) in this directory"


def test_verify_junit_has_one_case_per_scenario_with_what_differed(tmp_path: Path) -> None:
    bad = tmp_path / "wrong-expectation.yaml"
    bad.write_text(
        (settings.shipped_scenarios_dir / "bad-recipient.yaml")
        .read_text()
        .replace("code: 550", "code: 551")
    )
    result = smtplab("verify", "happy-path", str(bad), "--junit", "reports/out.xml", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    xml = JUnitXml.fromfile(str(tmp_path / "reports" / "out.xml"))
    [suite] = list(xml)
    cases = {case.name: case for case in suite}
    assert set(cases) == {"happy-path", "wrong-expectation"}
    assert cases["happy-path"].is_passed
    [failure] = cases["wrong-expectation"].result
    assert isinstance(failure, Failure)
    assert failure.message.startswith("code: expected 551, got 550")
    assert "RCPT TO:<bob" in (cases["happy-path"].system_out or "")
    assert suite.tests == 2
    assert suite.failures == 1


def test_schema_reference_is_current_and_lists_every_key() -> None:
    document = (ROOT / "docs" / "scenario-schema.md").read_text()
    assert document == schema_markdown(), (
        "docs/scenario-schema.md is stale: run `smtplab schema --markdown > "
        "docs/scenario-schema.md`"
    )
    for model in models():
        section = document.split(f"## {model.__name__}\n", 1)[1].split("\n## ", 1)[0]
        for name, field in model.model_fields.items():
            assert f"| `{field.alias or name}` |" in section, f"{model.__name__}.{name}"
    # Examples come from the catalog: a key set only by one scenario shows its value.
    scenarios, _ = load_catalog(settings.shipped_scenarios_dir)
    assert scenarios
    assert "`{25: drop}`" in document


def test_export_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "keep.txt").write_text("mine\n")
    result = smtplab("export", "happy-path", "--compose", "project", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == "smtplab: project: not an empty directory; choose a new one"
    assert (tmp_path / "project" / "keep.txt").read_text() == "mine\n"
