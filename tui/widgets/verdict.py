"""The verdict: root cause, what to tell the customer, the remedy, and the fix's proof.

It renders a `Diagnosis` as the engine gave it, optionally with the
trainee's answer (training mode) and the result of the re-send with the fix.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.diagnosis.events import Diagnosis, describe_hop
from tui.training import CaseResult


def remedy_settings_text(settings: dict[str, object]) -> str:
    """`port 587, security starttls, auth alice@example.com` (the password never shown)."""
    parts = []
    for key, value in settings.items():
        if key == "auth" and isinstance(value, dict):
            parts.append(f"auth as {value.get('user', '?')}")
        elif isinstance(value, list):
            parts.append(f"{key} {', '.join(str(v) for v in value)}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def answer_text(answer: CaseResult, score: str | None, *, retake: bool = False) -> Text:
    """The trainee's result line: right or wrong (causes by title), the time, the score.

    `retake`: the case was answered before in this session; that first answer counts.
    """
    tail = f" · session score {score}" if score is not None else ""
    first = ("Your first answer counts: ", "bold") if retake else ""
    if answer.correct:
        return Text.assemble(
            first, ("✓ Correct! ", "bold green"), f"({answer.seconds:.0f} s){tail}\n"
        )
    chosen = answer.chosen_title or answer.chosen
    expected = answer.expected_title or answer.expected
    return Text.assemble(
        first,
        ("✗ Not quite. ", "bold red"),
        "You chose ",
        (chosen, "bold"),
        "; the cause is ",
        (expected, "bold"),
        f".{tail}\n",
    )


class VerdictPanel(VerticalScroll):
    """Shows one diagnosis; hidden until the screen reveals it."""

    DEFAULT_CSS = """
    VerdictPanel {
        height: auto;
        max-height: 16;
    }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.diagnosis: Diagnosis | None = None
        self._answer: Text | None = None
        self._fix: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="verdict-body")

    def show(self, diagnosis: Diagnosis, *, answer: Text | None = None) -> None:
        """Show `diagnosis`; `answer` is the trainee's result line in training mode."""
        self.diagnosis = diagnosis
        self._answer = answer
        self._fix = None
        self._refresh_body()

    def show_fix(self, text: Text) -> None:
        """Add the outcome of "apply fix and re-send"."""
        self._fix = text
        self._refresh_body()

    def _refresh_body(self) -> None:
        if self.diagnosis is None:
            return
        self.query_one("#verdict-body", Static).update(self.render_diagnosis(self.diagnosis))
        self.border_title = f"Verdict: {self.diagnosis.title}"

    def render_diagnosis(self, diagnosis: Diagnosis) -> RenderableType:
        """The grid of cause, explanation, remedy, confirmation and the fix status."""
        grid = Table.grid(padding=(0, 1), expand=True)
        grid.add_column(style="bold", no_wrap=True, width=11)
        grid.add_column(ratio=1)
        grid.add_row("Root cause", Text(diagnosis.cause, style="bold red"))
        if diagnosis.hop is not None:
            grid.add_row(
                "Where",
                f"hop {describe_hop(diagnosis.hop)} (at the {diagnosis.failed_probe} step)",
            )
        elif diagnosis.node:
            grid.add_row(
                "Where",
                f"{diagnosis.node}"
                + (f" (at the {diagnosis.failed_probe} step)" if diagnosis.failed_probe else ""),
            )
        grid.add_row("Explain", diagnosis.explanation)
        grid.add_row("Remedy", diagnosis.remedy.text)
        if diagnosis.remedy.settings:
            settings = remedy_settings_text(diagnosis.remedy.settings)
            grid.add_row("Settings", Text(settings, style="bold green"))
        if diagnosis.confirm:
            grid.add_row("Confirm", Text(diagnosis.confirm, style="dim"))
        if diagnosis.references:
            grid.add_row("See", Text(", ".join(diagnosis.references), style="dim"))
        if diagnosis.alternatives:
            grid.add_row("Also fits", Text(", ".join(diagnosis.alternatives), style="dim"))
        # What to do next comes first: the panel may be taller than the room it gets.
        parts: list[RenderableType] = []
        if self._answer is not None:
            parts.append(self._answer)
        if self._fix is not None:
            parts.append(self._fix)
        elif diagnosis.remedy.settings:
            parts.append(Text("Press f to apply the fix to the settings and re-send.", "italic"))
        else:
            parts.append(
                Text("This fix is not a mail-program setting: nothing to re-send.", "italic dim")
            )
        parts.append(grid)
        return Group(*parts)
