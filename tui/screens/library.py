"""The scenario library: every case with its id, title, level and tags; type to filter.

Typing any letter while the list has focus starts filtering (the filter box
takes the key), so `q` and `?` stay free for quit and help. Enter opens the
highlighted case's briefing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input, Static

from lab.catalog import broken_summary, load_catalog
from lab.scenario.model import Level, Scenario
from tui.topology_art import fit

if TYPE_CHECKING:
    from tui.host import LibraryHost

LEVEL_STYLES = {
    Level.BEGINNER: "green",
    Level.INTERMEDIATE: "yellow",
    Level.ADVANCED: "red",
}
# Keys that keep their binding on the list instead of starting a filter.
_RESERVED = {"q", "?", "/"}


def matches(scenario: Scenario, query: str) -> bool:
    """Every word of `query` appears in the id, title, level or tags (case-insensitive)."""
    haystack = " ".join([scenario.id, scenario.title, str(scenario.level), *scenario.tags]).lower()
    return all(word in haystack for word in query.lower().split())


def ordered(scenarios: list[Scenario], course: tuple[str, ...]) -> list[Scenario]:
    """A course's cases in the trainer's order; without a course, all by level then id."""
    if course:
        by_id = {scenario.id: scenario for scenario in scenarios}
        return [by_id[case] for case in course if case in by_id]
    return sorted(scenarios, key=lambda s: (list(Level).index(s.level), s.id))


class LibraryScreen(Screen[None]):
    """Pick a case."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the list's and the filter box's own Enter would hide it from the footer.
        Binding("enter", "open", "Open case", show=True, priority=True),
        Binding("slash", "filter", "Filter", show=True),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("ctrl+e", "explain", "Explain an error", show=False),
    ]

    def __init__(self, host: LibraryHost) -> None:
        super().__init__(id="library")
        self.host = host
        self.scenarios: list[Scenario] = []
        self.shown: list[Scenario] = []
        self.load_errors: list[str] = []
        self._widths: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="library-intro")
        # select_on_focus off: typing on the list moves focus here mid-word, and a
        # selection would make the next key replace what was typed so far.
        yield Input(
            placeholder="type to filter by id, title, level or tag",
            id="filter",
            select_on_focus=False,
        )
        yield DataTable(id="scenarios", cursor_type="row", zebra_stripes=True)
        yield Static("", id="library-errors")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Scenario library"
        scenarios, errors = load_catalog()
        self.scenarios = ordered(scenarios, self.host.course)
        self.load_errors = [f"broken: {broken_summary(error)[1]}" for error in errors]
        table = self.query_one("#scenarios", DataTable)
        self._layout_columns(self.app.size.width)
        errors_view = self.query_one("#library-errors", Static)
        errors_view.update(Text("\n".join(self.load_errors)))  # file text is never markup
        errors_view.display = bool(self.load_errors)
        self.refresh_intro()
        table.focus()

    def _layout_columns(self, width: int) -> None:
        """Columns that fit `width`: tags only where the title keeps a readable share."""
        id_width = max((len(s.id) for s in self.scenarios), default=10)
        level_width = max(len(str(level)) for level in Level)
        longest = max((len(s.title) for s in self.scenarios), default=30)
        room = max(width - 4 - 2 * 4 - id_width - level_width, 20)
        with_tags = room >= 60
        title_width = max(min(longest, room - 20 if with_tags else room + 2), 12)
        widths = {"title": title_width, "tags": max(room - title_width, 10) if with_tags else 0}
        if widths == self._widths:
            return
        self._widths = widths
        table = self.query_one("#scenarios", DataTable)
        table.clear(columns=True)
        table.add_column("id", key="id", width=id_width)
        table.add_column("title", key="title", width=title_width)
        table.add_column("level", key="level", width=level_width)
        if with_tags:
            table.add_column("tags", key="tags", width=widths["tags"])
        self._fill(self.query_one("#filter", Input).value)

    def on_resize(self, event: events.Resize) -> None:
        """Columns follow the terminal's width."""
        if self.scenarios:
            self._layout_columns(event.size.width)

    def on_screen_resume(self) -> None:
        # Back from a case: the training score and the ✓/✗ marks may have changed.
        self.refresh_intro()
        if self.is_mounted and self.scenarios:
            self._fill(self.query_one("#filter", Input).value)

    def refresh_intro(self) -> None:
        """The line above the filter: what to do, and the training score in training mode."""
        host = self.host
        text = Text()
        text.append(f"{len(self.scenarios)} cases", style="bold")
        if host.course:
            text.append(" in the trainer's order")
        text.append(f" · backend: {host.backend_label}")
        text.append(" · type to filter, ↑↓ to choose, Enter to open, ? for help")
        if host.training is not None:
            text.append("\nTraining mode", style="bold magenta")
            text.append(f" · {host.training.user} · score {host.training.score}")
            text.append(" · ctrl+t: session summary")
        self.query_one("#library-intro", Static).update(text)

    def _fill(self, query: str) -> None:
        table = self.query_one("#scenarios", DataTable)
        current = self.highlighted
        table.clear()
        self.shown = [s for s in self.scenarios if matches(s, query)]
        training = self.host.training
        widths = self._widths
        for scenario in self.shown:
            title = Text(fit(scenario.title, widths["title"] - 3))
            if training is not None and (done := training.answered(scenario.id)) is not None:
                title.append("  ✓" if done.correct else "  ✗", "green" if done.correct else "red")
            cells: list[str | Text] = [
                Text(scenario.id),
                title,
                Text(str(scenario.level), style=LEVEL_STYLES.get(scenario.level, "")),
            ]
            if widths["tags"]:
                cells.append(Text(fit(", ".join(scenario.tags), widths["tags"])))
            table.add_row(*cells, key=scenario.id)
        if current is not None and current in self.shown:  # keep the reader's place
            table.move_cursor(row=self.shown.index(current))

    @property
    def highlighted(self) -> Scenario | None:
        """The case under the cursor."""
        table = self.query_one("#scenarios", DataTable)
        if not self.shown or table.cursor_row < 0:
            return None
        return self.shown[min(table.cursor_row, len(self.shown) - 1)]

    # --- filtering ------------------------------------------------------------------------

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_open()

    def on_key(self, event: events.Key) -> None:
        """Type-to-filter on the list; arrows leave the filter box for the list."""
        filter_box = self.query_one("#filter", Input)
        table = self.query_one("#scenarios", DataTable)
        if self.focused is table and event.is_printable and event.character:
            if event.character in _RESERVED or event.character == " ":
                return
            event.stop()
            event.prevent_default()
            filter_box.focus()
            filter_box.insert_text_at_cursor(event.character)
        elif self.focused is filter_box and event.key in ("down", "up"):
            event.stop()
            event.prevent_default()
            table.focus()
            table.action_cursor_down() if event.key == "down" else table.action_cursor_up()

    def action_filter(self) -> None:
        """Focus the filter box."""
        self.query_one("#filter", Input).focus()

    def action_clear_filter(self) -> None:
        """Empty the filter and go back to the list."""
        self.query_one("#filter", Input).value = ""
        self.query_one("#scenarios", DataTable).focus()

    # --- opening --------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#scenarios")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open()

    def action_explain(self) -> None:
        """The "paste an error" screen."""
        self.host.open_explain()

    def action_open(self) -> None:
        """Open the highlighted case's briefing."""
        scenario = self.highlighted
        if scenario is None:
            self.notify("No case matches the filter.", severity="warning")
            return
        self.host.open_briefing(scenario)
