"""The diagnosis stepper: the steps revealed so far, and what the selected one tried and proved.

It shows `Step` events exactly as the engine produced them. Which step comes
next, and when, is the screen's business: it calls `add_step` once per
reveal. Up/down (or a click) selects an earlier step to read again; the
stepper then posts `StepSelected` so the screen can show that step's
transcript and mark its node.
"""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from lab.diagnosis.events import Status, Step

STATUS_ICONS = {
    Status.OK: ("✓", "bold green"),
    Status.WARN: ("!", "bold yellow"),
    Status.FAIL: ("✗", "bold red"),
    Status.SKIPPED: ("·", "dim"),
    Status.INFO: ("i", "bold blue"),
}


def step_line(number: int, step: Step) -> Text:
    """`✓  1 resolve    Resolve mail.example.com` (no timing: it goes in the detail)."""
    icon, style = STATUS_ICONS.get(step.status, ("?", "bold"))
    text = Text()
    text.append(f"{icon} ", style=style)
    text.append(f"{number:>2} ", style="dim")
    text.append(f"{step.probe:<9}", style="bold")
    text.append(f" {step.title}")
    return text


def _value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(not isinstance(v, dict | list) for v in value):
        return ", ".join(str(v) for v in value) or "(none)"
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _item(value: dict[str, Any]) -> str:
    """`port=25 state=timeout ms=3001.4`: one record on one line, empty fields left out."""
    return " ".join(f"{k}={_value(v)}" for k, v in value.items() if v not in (None, "", [], {}))


def evidence_rows(evidence: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested evidence flattened to `key.sub: value` rows, in the engine's order.

    A list of records (the port scan's results, say) gets one row per record.
    """
    rows: list[tuple[str, str]] = []
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            rows.extend(evidence_rows(value, prefix=f"{name}."))
        elif isinstance(value, list | tuple) and value and all(isinstance(v, dict) for v in value):
            rows.extend((f"{name}[{index}]", _item(item)) for index, item in enumerate(value))
        else:
            rows.append((name, _value(value)))
    return rows


def step_detail(number: int, step: Step, *, timings: bool = True) -> Group:
    """Tried / proves / evidence for one step: a heading over a two-column grid.

    What it proves comes before the raw evidence: it is what a trainee must read.
    """
    icon, style = STATUS_ICONS.get(step.status, ("?", "bold"))
    heading = Text()
    heading.append(f"{icon} Step {number}: ", style=style)
    heading.append(step.title, style="bold")
    heading.append(f"  [{step.status}]", style=style)
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column(style="bold", no_wrap=True, width=9)
    grid.add_column(ratio=1)
    grid.add_row("Tried", step.tried)
    grid.add_row("Proves", Text(step.proves, style="bold"))
    if step.evidence:
        evidence = Text()
        for index, (key, value) in enumerate(evidence_rows(step.evidence)):
            if index:
                evidence.append("\n")
            evidence.append(f"{key}: ", style="dim")
            evidence.append(value)
        grid.add_row("Evidence", evidence)
    facts = []
    if step.node:
        facts.append(f"points at node {step.node}")
    if timings and step.status is not Status.SKIPPED:
        facts.append(f"took {step.duration:.3f}s")
    if facts:
        grid.add_row("", Text(" · ".join(facts), style="dim"))
    return Group(heading, grid)


class DiagnosisStepper(Vertical):
    """Revealed steps (a list) above the selected step's detail."""

    DEFAULT_CSS = """
    DiagnosisStepper {
        height: 1fr;
    }
    DiagnosisStepper > #stepper-status {
        height: 1;
        color: $text-muted;
    }
    DiagnosisStepper > #step-list {
        height: auto;
        max-height: 12;
        border: none;
        padding: 0;
    }
    DiagnosisStepper > #step-detail {
        height: 1fr;
        padding: 0 1;
    }
    """

    class StepSelected(Message):
        """A step was selected for reading (by the trainee or by a reveal)."""

        def __init__(self, stepper: DiagnosisStepper, number: int, step: Step) -> None:
            super().__init__()
            self.stepper = stepper
            self.number = number
            self.step = step

        @property
        def control(self) -> DiagnosisStepper:
            """The stepper that posted this."""
            return self.stepper

    def __init__(
        self,
        *,
        timings: bool = True,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.steps: list[Step] = []
        self.timings = timings

    def compose(self) -> ComposeResult:
        yield Static("", id="stepper-status")
        yield OptionList(id="step-list")
        with VerticalScroll(id="step-detail"):
            yield Static("", id="step-detail-body")

    @property
    def step_list(self) -> OptionList:
        """The list of revealed steps (focus it for keyboard navigation)."""
        return self.query_one("#step-list", OptionList)

    def set_status(self, text: str | Text) -> None:
        """The line above the list: what the stepper is waiting for."""
        self.query_one("#stepper-status", Static).update(text)

    def reset(self, hint: str | Text = "") -> None:
        """Forget every step (a new diagnosis run)."""
        self.steps.clear()
        self.step_list.clear_options()
        self.query_one("#step-detail-body", Static).update(hint)

    def add_step(self, step: Step) -> None:
        """Reveal one more step and select it."""
        self.steps.append(step)
        number = len(self.steps)
        self.step_list.add_option(Option(step_line(number, step), id=f"step-{number}"))
        self.step_list.highlighted = number - 1

    def select(self, number: int) -> None:
        """Select step `number` (1-based) for reading."""
        if 1 <= number <= len(self.steps):
            self.step_list.highlighted = number - 1

    def show_hint(self, hint: str | Text) -> None:
        """Text in the detail area when no step is selected."""
        self.query_one("#step-detail-body", Static).update(hint)

    @on(OptionList.OptionHighlighted, "#step-list")
    def _highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        index = event.option_index
        if 0 <= index < len(self.steps):
            step = self.steps[index]
            body = self.query_one("#step-detail-body", Static)
            body.update(step_detail(index + 1, step, timings=self.timings))
            self.post_message(self.StepSelected(self, index + 1, step))

    @on(OptionList.OptionSelected, "#step-list")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        # Enter on a step is not an action of its own; let it not bubble as one.
        event.stop()
