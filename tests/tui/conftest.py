"""TUI test fixtures: no cursor blink (stable screenshots), a pinned catalog for the library.

The library snapshot must not change whenever a scenario is added to the
catalog, so snapshot tests see a fixed selection of the real scenario files.
"""

from __future__ import annotations

import pytest
from textual.widgets import Input

from lab.catalog import load
from lab.errors import ScenarioError
from lab.scenario.model import Scenario

PINNED = ("blocked-port-25", "port-25-refused", "happy-path", "relay-denied", "bad-recipient")


@pytest.fixture(autouse=True)
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor makes screenshots depend on timing."""
    monkeypatch.setattr(Input, "cursor_blink", False)


@pytest.fixture
def pinned_catalog(monkeypatch: pytest.MonkeyPatch) -> list[Scenario]:
    """The library shows only the `PINNED` scenarios."""
    scenarios = [load(name) for name in PINNED]

    def fixed() -> tuple[list[Scenario], list[ScenarioError]]:
        return list(scenarios), []

    monkeypatch.setattr("tui.screens.library.load_catalog", fixed)
    return scenarios
