"""Node logs: relay queue, MX decisions and DNS queries, merged in time order.

Renders `tui.labdata.LogEntry` rows, optionally filtered to one node.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Select

from tui.labdata import LogEntry

ALL_NODES = "all nodes"
LEVEL_STYLES = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": ""}


class LogsView(Vertical):
    """A node filter above a table of events."""

    DEFAULT_CSS = """
    LogsView {
        height: 1fr;
    }
    LogsView > Select {
        width: 30;
        height: 1;
    }
    LogsView > DataTable {
        height: 1fr;
    }
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.nodes = list(nodes)
        self.entries: list[LogEntry] = []

    def compose(self) -> ComposeResult:
        options = [(ALL_NODES, ALL_NODES), *((node, node) for node in self.nodes)]
        yield Select(options, id="log-node", compact=True, allow_blank=False, value=ALL_NODES)
        yield DataTable(id="log-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.query_one("#log-table", DataTable).add_columns("time", "node", "event", "what")

    @property
    def node_filter(self) -> str:
        """The node shown, or `ALL_NODES`."""
        return str(self.query_one("#log-node", Select).value)

    def update_entries(self, entries: Sequence[LogEntry]) -> None:
        """Show `entries` (filtered by the selected node); follows the end if it was there."""
        self.entries = list(entries)
        self._fill()

    def _fill(self) -> None:
        table = self.query_one("#log-table", DataTable)
        at_end = table.row_count == 0 or table.cursor_row >= table.row_count - 1
        wanted = self.node_filter
        shown = [e for e in self.entries if wanted in (ALL_NODES, e.node)]
        if table.row_count == len(shown) and table.row_count and not at_end:
            return  # nothing new and the reader is looking at something: leave it alone
        table.clear()
        for entry in shown:
            style = LEVEL_STYLES.get(entry.level, "")
            table.add_row(
                Text(entry.clock, style="dim"),
                entry.node,
                Text(entry.event, style=style),
                Text(entry.summary, style=style),
            )
        if shown and at_end:
            table.move_cursor(row=len(shown) - 1)

    @on(Select.Changed, "#log-node")
    def _filter_changed(self, event: Select.Changed) -> None:
        event.stop()
        self._fill()
