"""The wire view: what crossed the customer's router during a send or a diagnosis run, one
line per TCP connection (SYNs unanswered, a reset, bytes each way), the connections of
the selected step in bold and the rest dimmed."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from lab.wire.flows import Flow, Outcome

_OUTCOME_STYLES = {
    Outcome.UNANSWERED: "bold red",
    Outcome.REFUSED: "bold red",
    Outcome.UNREACHABLE: "bold red",
    Outcome.RESET: "bold yellow",
    Outcome.ESTABLISHED: "green",
    Outcome.UNKNOWN: "",
}


def wire_text(flows: Sequence[Flow], ports: Collection[int] = ()) -> Text:
    """The flows as lines; with `ports`, flows to other ports are dimmed."""
    text = Text()
    if not flows:
        text.append("No TCP connection crossed this router.", style="italic")
    for flow in flows:
        focused = not ports or flow.server_port in ports
        style = _OUTCOME_STYLES[flow.outcome] if focused else "dim"
        text.append(f"{flow.outcome.value:<11} ", style=style)
        text.append(flow.describe() + "\n", style="" if focused else "dim")
    return text


class WireView(VerticalScroll):
    """A title line and the flows, scrolled."""

    DEFAULT_CSS = """
    WireView {
        height: 1fr;
    }
    WireView > #wire-title {
        text-style: bold;
    }
    """

    def __init__(self, hint: str, *, id: str | None = None) -> None:  # noqa: A002
        super().__init__(id=id)
        self.hint = hint

    def compose(self):  # type: ignore[no-untyped-def]
        yield Static("", id="wire-title")
        yield Static(Text(self.hint, style="italic"), id="wire-body")

    def show(self, title: str, flows: Sequence[Flow], ports: Collection[int] = ()) -> None:
        """Show `flows` under `title`; those to `ports` stand out."""
        self.query_one("#wire-title", Static).update(title)
        self.query_one("#wire-body", Static).update(wire_text(flows, ports))
