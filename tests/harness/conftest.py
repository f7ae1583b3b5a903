"""Harness tests run the plugin as a user's project does (`tests.harness.project`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.harness.project import Outcome, run_pytest


@pytest.fixture
def run_project(tmp_path: Path) -> Callable[..., Outcome]:
    """`run_project(files, *pytest_args)` in a fresh directory."""
    return partial(run_pytest, tmp_path)
