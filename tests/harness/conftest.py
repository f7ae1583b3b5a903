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


# The Docker engine, node image, skip-without-engine hook and end-of-session check, for the
# docker variant of the README examples: imported, not copied.
from tests.runtime.conftest import (  # noqa: E402
    docker_client,
    docker_session_clean,
    node_image,
    pytest_runtest_setup,
)

__all__ = [
    "docker_client",
    "docker_session_clean",
    "node_image",
    "pytest_runtest_setup",
    "run_project",
]
