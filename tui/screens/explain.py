"""The "paste an error" screen: `smtplab explain` inside the TUI.

The agent pastes what the customer sent (a bounce, a log line, an exception) into
the text area; ctrl+r explains it with `lab.explain` (pure, no lab needed) and
shows the ranked causes with their evidence, or what was recognised when no cause
fits; ctrl+o opens the briefing of the scenario that reproduces the best cause.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TextArea

from lab.catalog import load
from lab.explain import explain
from lab.explain.report import answer, as_text
from lab.explain.scenarios import scenario_for

if TYPE_CHECKING:
    from tui.host import LibraryHost

PROMPT = "Paste the customer's error text above, then press ctrl+r."


class ExplainScreen(Screen[None]):
    """From a pasted error text to the catalog's causes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+r", "explain", "Explain", priority=True),
        Binding("ctrl+o", "open_case", "Open its case", priority=True),
        Binding("escape", "back", "Back", priority=True),
    ]

    def __init__(self, host: LibraryHost) -> None:
        super().__init__(id="explain")
        self.host = host
        self.result: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield TextArea(id="error-text", soft_wrap=True)
        with VerticalScroll(id="explain-result"):
            yield Static(PROMPT, id="explanation", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Explain an error"
        self.query_one("#error-text", TextArea).focus()

    def action_explain(self) -> None:
        """Rank the catalog's causes for the pasted text."""
        text = self.query_one("#error-text", TextArea).text
        shown = self.query_one("#explanation", Static)
        if not text.strip():
            shown.update(PROMPT)
            self.result = None
            return
        recognised, candidates = explain(text)
        self.result = answer(recognised, candidates, scenario_for)
        shown.update(Text(as_text(self.result)))  # plain: "[unknown-user]" is not markup

    def action_open_case(self) -> None:
        """The briefing of the scenario that reproduces the best cause."""
        candidates = self.result["candidates"] if self.result else []
        scenario = candidates[0]["scenario"] if candidates else None
        if scenario is None:
            self.notify("No lab case reproduces this cause (explain a text first).")
            return
        self.host.open_briefing(load(scenario))

    def action_back(self) -> None:
        """Back to the library."""
        self.dismiss()
