"""Messages the TUI's workers post to its screens.

Workers (lab start, diagnosis engine, sends) never touch widgets: they post
these, and the screen that owns the worker updates its widgets in the
handlers. Messages a widget posts about itself (a button pressed, a step
selected) are nested in that widget's class instead, as posting does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from lab.diagnosis.events import Diagnosis, Step
    from lab.runs import RunReport
    from lab.runtime.base import Lab
    from lab.scenario.model import Scenario
    from lab.wire.flows import Flow


class LabReady(Message):
    """The lab of `scenario` is up and healthy."""

    def __init__(self, scenario: Scenario, lab: Lab) -> None:
        super().__init__()
        self.scenario = scenario
        self.lab = lab


class LabProgress(Message):
    """A line about a slow step of bringing a lab up (may come from another thread)."""

    def __init__(self, line: str) -> None:
        super().__init__()
        self.line = line


class LabFailed(Message):
    """The lab did not come up; `error` is the message to show (never a traceback)."""

    def __init__(self, scenario: Scenario, error: str) -> None:
        super().__init__()
        self.scenario = scenario
        self.error = error


class DiagnosisEvent(Message):
    """The engine produced the next step, or its verdict."""

    def __init__(self, event: Step | Diagnosis, run: int) -> None:
        super().__init__()
        self.event = event
        self.run = run  # which diagnosis run it belongs to: a restart ignores stale events


class DiagnosisFinished(Message):
    """The engine's iterator ended; `error` says why when it ended badly."""

    def __init__(self, run: int, error: str | None = None, flows: list[Flow] | None = None) -> None:
        super().__init__()
        self.run = run
        self.error = error
        self.flows = flows  # what crossed the customer's router while the engine probed


class SendFinished(Message):
    """The mail program sent (or failed to) and the message was followed to its fate."""

    def __init__(self, report: RunReport, *, fix: bool, flows: list[Flow] | None = None) -> None:
        super().__init__()
        self.report = report
        self.fix = fix  # the send was "apply fix and re-send"
        self.flows = flows  # what crossed the customer's router during the send


class SendFailed(Message):
    """A send could not even be attempted (the lab went away, bad settings...)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


__all__ = [
    "DiagnosisEvent",
    "DiagnosisFinished",
    "LabFailed",
    "LabProgress",
    "LabReady",
    "SendFailed",
    "SendFinished",
]
