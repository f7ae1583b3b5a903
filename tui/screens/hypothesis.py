"""Training mode: commit to a root cause before the verdict is shown.

A modal over the workbench with the short list of causes (the right one and
three look-alikes from the catalog). It returns the chosen entry id, or None
when the trainee wants to keep investigating.
"""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from lab.scenario.model import Scenario
from tui.training import Choice


class HypothesisScreen(ModalScreen[str | None]):
    """Pick the cause."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "keep_looking", "Keep investigating"),
    ]

    def __init__(self, scenario: Scenario, choices: list[Choice]) -> None:
        super().__init__(id="hypothesis")
        self.scenario = scenario
        self.choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(id="hypothesis-dialog") as dialog:
            dialog.border_title = "Training: what is the root cause?"
            yield Static(
                Text.assemble(
                    ("The engine has reached a verdict. ", "bold"),
                    "Commit to your hypothesis first: which of these explains the ticket?",
                ),
                id="hypothesis-intro",
            )
            yield OptionList(
                *(
                    Option(f"{number}. {choice.title}", id=choice.entry)
                    for number, choice in enumerate(self.choices, start=1)
                ),
                id="causes",
            )
            yield Static(
                Text("↑↓ or 1-4, Enter: commit · Escape: keep investigating", style="dim"),
                id="hypothesis-help",
            )

    def on_mount(self) -> None:
        self.query_one("#causes", OptionList).focus()

    def on_key(self, event: events.Key) -> None:
        """Digits pick directly (keyboard first)."""
        if event.character and event.character.isdigit():
            index = int(event.character) - 1
            if 0 <= index < len(self.choices):
                event.stop()
                self.dismiss(self.choices[index].entry)

    @on(OptionList.OptionSelected, "#causes")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_keep_looking(self) -> None:
        """Close without answering."""
        self.dismiss(None)
