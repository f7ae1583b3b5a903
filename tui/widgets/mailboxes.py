"""Mailboxes: every message the lab's servers hold, bounces with their DSN fields.

Renders `tui.labdata.MailItem` rows; the screen collects them from the lab.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import DataTable, Static

from tui.labdata import MailItem


def mail_detail(item: MailItem) -> Table:
    """Headers of one message and, for a bounce, each recipient's DSN group."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    kind = Text("BOUNCE (DSN)", style="bold red") if item.is_bounce else Text("message", "green")
    grid.add_row("Kind", kind)
    grid.add_row("Mailbox", f"{item.mailbox} on {item.node}")
    grid.add_row("From", item.sender)
    grid.add_row("To", item.to)
    grid.add_row("Subject", item.subject)
    grid.add_row("Message-ID", item.message_id)
    if item.bounce is not None:
        if item.original_message_id:
            grid.add_row("Returns", item.original_message_id)
        for group in item.bounce:
            grid.add_row("", "")
            grid.add_row("Recipient", Text(group.recipient, style="bold"))
            grid.add_row("Action", Text(group.action, style="red"))
            grid.add_row("Status", Text(group.status, style="bold red"))
            if group.diagnostic:
                grid.add_row("Diagnostic", group.diagnostic)
            if group.remote_mta:
                grid.add_row("Remote MTA", group.remote_mta)
    return grid


class MailboxesView(Horizontal):
    """A table of messages, and the selected message's details."""

    DEFAULT_CSS = """
    MailboxesView {
        height: 1fr;
    }
    MailboxesView > DataTable {
        width: 3fr;
        height: 1fr;
    }
    MailboxesView > #mail-detail {
        width: 2fr;
        height: 1fr;
        padding: 0 1;
        border-left: vkey $foreground 20%;
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
        self.items: list[MailItem] = []

    def compose(self) -> ComposeResult:
        yield DataTable(id="mail-table", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="mail-detail"):
            yield Static(Text("No mail yet.", style="dim"), id="mail-detail-body")

    def on_mount(self) -> None:
        table = self.query_one("#mail-table", DataTable)
        table.add_columns("", "node", "mailbox", "from", "subject")

    def update_items(self, items: Sequence[MailItem]) -> None:
        """Show `items`, keeping the selected row where possible."""
        if list(items) == self.items:
            return
        table = self.query_one("#mail-table", DataTable)
        cursor = table.cursor_row
        self.items = list(items)
        table.clear()
        for index, item in enumerate(self.items):
            mark = Text("✗ DSN", style="bold red") if item.is_bounce else Text("✓", "green")
            table.add_row(mark, item.node, item.mailbox, item.sender, item.subject, key=str(index))
        if self.items:
            table.move_cursor(row=min(max(cursor, 0), len(self.items) - 1))
            self._show(min(max(cursor, 0), len(self.items) - 1))
        else:
            self.query_one("#mail-detail-body", Static).update(Text("No mail yet.", style="dim"))

    def _show(self, index: int) -> None:
        if 0 <= index < len(self.items):
            self.query_one("#mail-detail-body", Static).update(mail_detail(self.items[index]))

    @on(DataTable.RowHighlighted, "#mail-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show(event.cursor_row)
