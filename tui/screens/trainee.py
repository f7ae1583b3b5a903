"""Training mode without `--trainee`: ask who is answering before the first case.

Under `smtplab tui --serve` every browser session is its own app, so each
trainee of a class names themselves here and gets their own session file.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class TraineeScreen(ModalScreen[str]):
    """A name prompt; returns the name typed (never empty)."""

    def compose(self) -> ComposeResult:
        with Vertical(id="trainee-dialog") as dialog:
            dialog.border_title = "Training"
            yield Static(
                Text.assemble(
                    ("Who is training? ", "bold"),
                    "Your name goes on your score file for the trainer.",
                ),
                id="trainee-intro",
            )
            yield Input(placeholder="your name", id="trainee-name", max_length=60)
            yield Static(Text("Enter: start", style="dim"), id="trainee-help")

    def on_mount(self) -> None:
        self.query_one("#trainee-name", Input).focus()

    @on(Input.Submitted, "#trainee-name")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        name = event.value.strip()
        if not name:
            self.notify("Type your name, then Enter.", severity="warning")
            return
        self.dismiss(name)
