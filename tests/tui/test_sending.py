"""The verdict's fix applied to settings, and how a send's outcome reads."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import cast

import pytest

from lab.catalog import load
from lab.diagnosis.events import Diagnosis, Remedy
from lab.runs import RunReport
from lab.scenario.model import Outcome, Stage
from tests.tui.helpers import FIX, VERDICT
from tui.sending import apply_remedy, outcome_text


def verdict(settings: dict[str, object]) -> Diagnosis:
    """The scripted verdict with `settings` as its remedy."""
    return replace(VERDICT, remedy=Remedy(VERDICT.remedy.text, settings))


def test_apply_remedy_changes_only_the_remedy_settings() -> None:
    base = load("blocked-port-25").client[1].settings
    fixed = apply_remedy(verdict(FIX), base)
    assert (fixed.port, str(fixed.security)) == (587, "starttls")
    assert fixed.auth is not None
    assert fixed.auth.user == "alice@example.com"
    assert (fixed.server, fixed.sender, fixed.to) == (base.server, base.sender, base.to)


def test_apply_remedy_refuses_what_does_not_apply() -> None:
    base = load("blocked-port-25").client[1].settings
    with pytest.raises(ValueError, match="port"):
        apply_remedy(verdict({"port": "not a port"}), base)


@pytest.mark.parametrize(
    ("outcome", "stage", "code", "enhanced", "line"),
    [
        # a delivery says nothing of stage or codes
        (Outcome.DELIVERED, Stage.DELIVERY, 250, "2.0.0", "✓ delivered — done"),
        (Outcome.REJECTED, Stage.RCPT, 550, "5.1.1", "✗ rejected at rcpt [550 5.1.1] — done"),
        (Outcome.CONNECT_TIMEOUT, Stage.CONNECT, None, None, "✗ connect-timeout at connect — done"),
    ],
)
def test_outcome_text(
    outcome: Outcome, stage: Stage, code: int | None, enhanced: str | None, line: str
) -> None:
    report = SimpleNamespace(
        outcome=outcome, stage=stage, code=code, enhanced=enhanced, text="done"
    )
    assert outcome_text(cast("RunReport", report)).plain == line
