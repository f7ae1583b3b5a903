"""The topology drawing as a widget, with the node where things went wrong marked in colour.

The drawing itself comes from `tui.topology_art` (pure text); this widget
only maps each span's role and mark to a style and redraws at its own width.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.reactive import reactive
from textual.widget import Widget

from lab.scenario.model import MailSettings, Scenario
from tui.topology_art import Drawing, Mark, Role, draw

_ROLE_CLASSES = {
    Role.FRAME: "topology--frame",
    Role.NAME: "topology--name",
    Role.KIND: "topology--kind",
    Role.TEXT: "topology--text",
    Role.NETWORK: "topology--network",
    Role.LINK: "topology--link",
    Role.ALLOW: "topology--allow",
    Role.BLOCK: "topology--block",
    Role.ALERT: "topology--alert",
    Role.MARK: "topology--name",
}
_MARK_CLASSES = {Mark.FAIL: "topology--fail", Mark.WARN: "topology--warn", Mark.OK: "topology--ok"}
# Only a marked node's outline and title take the mark's colour: its body stays readable.
_MARKED_ROLES = {Role.FRAME, Role.NAME, Role.KIND, Role.MARK}


class TopologyView(Widget):
    """Draws a scenario's networks and nodes; `marks` colours nodes (e.g. the faulty router)."""

    DEFAULT_CSS = """
    TopologyView {
        height: auto;
        width: 1fr;
    }
    TopologyView > .topology--frame { color: $text-muted; }
    TopologyView > .topology--name { color: $text; text-style: bold; }
    TopologyView > .topology--kind { color: $text-muted; }
    TopologyView > .topology--text { color: $text; }
    TopologyView > .topology--network { color: $accent; }
    TopologyView > .topology--link { color: $accent; text-style: bold; }
    TopologyView > .topology--allow { color: $success; }
    TopologyView > .topology--block { color: $error; text-style: bold; }
    TopologyView > .topology--alert { color: $warning; text-style: bold; }
    TopologyView > .topology--fail { color: $error; text-style: bold; }
    TopologyView > .topology--warn { color: $warning; text-style: bold; }
    TopologyView > .topology--ok { color: $success; }
    """

    COMPONENT_CLASSES = {*_ROLE_CLASSES.values(), *_MARK_CLASSES.values()}

    marks: reactive[dict[str, Mark]] = reactive(dict, layout=True)
    client: reactive[MailSettings | None] = reactive(None, layout=True)
    # Training: faults stay out of the drawing until the verdict (set False to reveal them).
    hide_faults: reactive[bool] = reactive(False, layout=True)

    def __init__(
        self,
        scenario: Scenario,
        *,
        layout: Literal["auto", "columns", "stack"] = "auto",
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
        hide_faults: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.scenario = scenario
        self._layout = layout
        self.set_reactive(TopologyView.hide_faults, hide_faults)

    def mark(self, node: str | None, mark: Mark | None) -> None:
        """Mark `node` (replacing any earlier mark of the same kind on another node)."""
        marks = {name: m for name, m in self.marks.items() if m is not mark}
        if node is not None and mark is not None and node in self.scenario.nodes:
            marks[node] = mark
        self.marks = marks

    def set_marks(self, marks: Mapping[str, Mark]) -> None:
        """Replace every mark."""
        self.marks = {node: mark for node, mark in marks.items() if node in self.scenario.nodes}

    def clear_marks(self) -> None:
        """Remove every mark."""
        self.marks = {}

    def drawing(self, width: int) -> Drawing:
        """The drawing at `width` columns."""
        return draw(
            self.scenario,
            width,
            marks=self.marks,
            layout=self._layout,
            client=self.client,
            hide_faults=self.hide_faults,
        )

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        """As tall as the drawing at this width."""
        return self.drawing(width).height

    def render(self) -> Text:
        """The drawing, styled per span."""
        drawing = self.drawing(self.content_size.width or self.size.width)
        styles: dict[str, Style] = {}

        def style(component: str) -> Style:
            if component not in styles:
                styles[component] = self.get_component_rich_style(component, partial=True)
            return styles[component]

        text = Text(no_wrap=True, overflow="crop")
        for number, row in enumerate(drawing.rows):
            if number:
                text.append("\n")
            for span in row:
                component = _ROLE_CLASSES[span.role]
                if span.mark is not None and span.role in _MARKED_ROLES:
                    component = _MARK_CLASSES[span.mark]
                text.append(span.text, style(component))
        return text
