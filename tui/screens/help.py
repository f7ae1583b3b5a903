"""The help screen: the keys of the screen underneath, and how a case is worked.

The key list is read from the bindings active on the screen it was opened
from, so it can never drift from what the keys really do.
"""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GUIDE = """\
1. Library: pick a case (type to filter), Enter opens its briefing.
2. Briefing: read the customer's ticket and the topology; Enter starts the lab.
3. Workbench: n (or space) reveals the diagnosis one step at a time. Each step
   says what was tried, the evidence, and what it proves; the topology marks
   the node where things went wrong. The last n reveals the verdict.
4. f applies the remedy to the mail program's settings and re-sends: the
   transcript and the mailboxes show whether the message is delivered now.
   Where the fix is on a server (a certificate, a DNS record, a limit), r
   restarts the lab with the servers repaired and diagnoses it again.
5. Training mode (smtplab tui --training): before the verdict you commit to a
   cause; your answers, time per case and score are saved for your trainer
   (ctrl+t shows the session's score).
6. ctrl+e on the library: paste a customer's error text (a bounce, a log line,
   an exception) and ctrl+r explains it: the known causes, ranked, with the lab
   case that reproduces each (ctrl+o opens it).
q quits from anywhere and always takes the running lab down."""


# Textual's own keys (ctrl+q, tab, copy): they work, but they are not this app's commands.
_TEXTUAL_OWN = {
    (key, binding.action)
    for binding in (*App.BINDINGS, *Screen.BINDINGS)
    if isinstance(binding, Binding)
    for key in binding.key.split(",")
}


def bindings_table(screen: Screen[object]) -> Table:
    """Key / action rows for the bindings of `screen` and the app (not a focused widget's,
    nor Textual's own).

    Keys doing the same thing share a row ("n / space  Next step").
    """
    app = screen.app
    rows: dict[str, list[str]] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if active.node not in (screen, app) or not binding.description:
            continue
        if (key, binding.action) in _TEXTUAL_OWN:
            continue
        keys = rows.setdefault(binding.description, [])
        shown = app.get_key_display(binding) or key
        if shown not in keys:
            keys.append(shown)
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for description, keys in rows.items():
        table.add_row(" / ".join(keys), description)
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and the workflow."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close help"),
        Binding("question_mark", "close", "Close help", show=False),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__(id="help")
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog") as dialog:
            dialog.border_title = "Help"
            title = self.under.sub_title or self.under.id or "this screen"
            yield Static(Text(f"Keys on {title}", style="bold"), classes="help-heading")
            yield Static(bindings_table(self.under), id="help-keys")
            yield Static(Text("How a case is worked", style="bold"), classes="help-heading")
            yield Static(GUIDE, id="help-guide")
            yield Static(Text("Escape or ? closes this help.", style="dim"))

    def action_close(self) -> None:
        """Back to where help was opened."""
        self.dismiss(None)
