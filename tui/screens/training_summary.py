"""The training session's score: each case, right or wrong, its time, and where it is saved."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from tui.training import TrainingSession


class TrainingSummaryScreen(Screen[None]):
    """Score summary for the session so far."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, session: TrainingSession) -> None:
        super().__init__(id="training-summary")
        self.session = session

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary-score")
        yield DataTable(id="summary-cases", cursor_type="row", zebra_stripes=True)
        yield Static("", id="summary-file")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Training summary"
        session = self.session
        score = session.score
        headline = Text()
        headline.append(f"Score: {score}", style="bold green" if score.percent >= 50 else "bold")
        headline.append(f" · {score.seconds:.0f} s in all · trainee {session.user}")
        if not session.cases:
            headline.append("\nNo case answered yet: open a case and step it to its verdict.")
        self.query_one("#summary-score", Static).update(headline)
        table = self.query_one("#summary-cases", DataTable)
        table.add_columns("", "case", "your answer", "right answer", "time", "steps", "fix")
        for case in session.cases:
            mark = Text("✓", "bold green") if case.correct else Text("✗", "bold red")
            fix = {True: "delivered", False: "failed", None: "-"}[case.fix_verified]
            table.add_row(
                mark,
                case.scenario,
                case.chosen_title or case.chosen,
                case.expected_title or case.expected,
                f"{case.seconds:.0f} s",
                str(case.steps_seen),
                fix,
            )
        where = f"Saved to {session.path}" if session.cases else f"Will be saved to {session.path}"
        self.query_one("#summary-file", Static).update(Text(where, style="dim"))
        table.focus()

    def action_back(self) -> None:
        """Back to where the summary was opened."""
        self.dismiss()
