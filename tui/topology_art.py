"""A scenario's topology drawn as text: networks, the ISP router and its port policies, servers.

Pure Python (no Textual, no I/O) so the CLI, a plain terminal and the TUI can
all use it. A drawing is a grid of `Span`s; each span remembers which node it
belongs to and what role it plays (frame, port policy, alert...), so a front
end can colour one node's box without re-parsing text. `Drawing.text()` is the
plain rendering: a marked node gets a heavy frame and a marker, so the mark
survives without colour.

Two layouts, chosen by width: `columns` (customer networks | routers |
outside networks, linked by arrows) when there is room, else `stack` (the
same boxes one under another) for narrow side panels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from lab.scenario.model import (
    AuthPolicy,
    ClientNode,
    DnsNode,
    Listener,
    ListenerTls,
    MailServerNode,
    MailSettings,
    MxNode,
    PortPolicy,
    RelayNode,
    RouterNode,
    Scenario,
)

# Below this many columns the three-column layout cannot fit a readable node box.
COLUMNS_MIN_WIDTH = 72
MIN_WIDTH = 24


class Role(StrEnum):
    """What a piece of the drawing is, so a front end can style it."""

    FRAME = "frame"
    NAME = "name"  # a node's name in its frame title
    KIND = "kind"
    TEXT = "text"
    NETWORK = "network"  # network panels and their labels
    LINK = "link"  # arrows between networks and routers
    ALLOW = "allow"  # a port a router lets through, a server listener
    BLOCK = "block"  # a port a router drops or rejects
    ALERT = "alert"  # outage, switched-off server, DNS fault
    MARK = "mark"  # the marker on a node where things went wrong


class Mark(StrEnum):
    """How a node is marked: where the diagnosis found the fault, or a step that passed."""

    FAIL = "fail"
    WARN = "warn"
    OK = "ok"


_MARKERS = {Mark.FAIL: "✗", Mark.WARN: "!", Mark.OK: "✓"}


@dataclass(frozen=True)
class Span:
    """A run of characters with one role, belonging to a node or not."""

    text: str
    role: Role = Role.TEXT
    node: str | None = None
    mark: Mark | None = None  # the node's mark, copied onto each of its spans


@dataclass(frozen=True)
class Drawing:
    """A rendered topology: rows of spans, each row exactly `width` characters."""

    rows: tuple[tuple[Span, ...], ...]
    width: int

    def text(self) -> str:
        """Plain text, trailing blanks removed."""
        return "\n".join("".join(span.text for span in row).rstrip() for row in self.rows)

    @property
    def height(self) -> int:
        """Number of rows."""
        return len(self.rows)


# --- the grid -------------------------------------------------------------------------------

_Cell = tuple[str, Role, str | None]
_LIGHT = "┌┐└┘─│"
_HEAVY = "┏┓┗┛━┃"
_ROUND = "╭╮╰╯─│"


class _Canvas:
    """A growable grid of cells; writes past the right edge are clipped."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.cells: list[list[_Cell]] = []

    def _ensure(self, y: int) -> None:
        while len(self.cells) <= y:
            self.cells.append([(" ", Role.TEXT, None)] * self.width)

    def put(self, x: int, y: int, text: str, role: Role, node: str | None = None) -> None:
        self._ensure(y)
        row = self.cells[y]
        for offset, char in enumerate(text):
            if 0 <= x + offset < self.width:
                row[x + offset] = (char, role, node)

    def frame(
        self,
        x: int,
        y: int,
        width: int,
        height: int,
        chars: str,
        role: Role,
        node: str | None = None,
    ) -> None:
        top_left, top_right, bottom_left, bottom_right, horizontal, vertical = tuple(chars)
        self.put(x, y, top_left + horizontal * (width - 2) + top_right, role, node)
        for row in range(y + 1, y + height - 1):
            self.put(x, row, vertical, role, node)
            self.put(x + width - 1, row, vertical, role, node)
        self.put(
            x, y + height - 1, bottom_left + horizontal * (width - 2) + bottom_right, role, node
        )

    def drawing(self, marks: Mapping[str, Mark]) -> Drawing:
        rows = []
        for row in self.cells:
            spans: list[Span] = []
            text = ""
            key: tuple[Role, str | None] | None = None
            for char, role, node in row:
                if key is not None and (role, node) != key:
                    spans.append(_span(text, key, marks))
                    text = ""
                key = (role, node)
                text += char
            if key is not None:
                spans.append(_span(text, key, marks))
            rows.append(tuple(spans))
        return Drawing(tuple(rows), self.width)


def _span(text: str, key: tuple[Role, str | None], marks: Mapping[str, Mark]) -> Span:
    role, node = key
    return Span(text, role, node, marks.get(node) if node else None)


def fit(text: str, width: int) -> str:
    """`text` cut to `width` characters, with an ellipsis when cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


# --- what each node shows -------------------------------------------------------------------


@dataclass(frozen=True)
class _Box:
    """A node's frame title and body lines, before placement."""

    name: str
    kind: str
    lines: tuple[tuple[str, Role], ...]


def _listener_label(listener: Listener) -> str:
    """`:587 STARTTLS+AUTH`: only what a client must do to be served on that port."""
    needs = []
    if listener.tls is ListenerTls.IMPLICIT:
        needs.append("TLS")
    elif listener.require_tls:
        needs.append("STARTTLS")
    if listener.auth is AuthPolicy.REQUIRED:
        needs.append("AUTH")
    return f":{listener.port}" + (f" {'+'.join(needs)}" if needs else "")


def _box(name: str, scenario: Scenario, hidden: bool = False) -> _Box:
    """A node's box; `hidden` leaves out what gives the fault away (training briefings)."""
    spec = scenario.nodes[name]
    lines: list[tuple[str, Role]] = []
    if isinstance(spec, ClientNode):
        settings = spec.settings
        lines.append((spec.hostname, Role.TEXT))
        lines.append((f"→ {settings.server}:{settings.port} {settings.security}", Role.TEXT))
        if settings.auth is not None:
            lines.append((f"  auth as {settings.auth.user}", Role.TEXT))
        return _Box(name, "mail program", tuple(lines))
    if isinstance(spec, RouterNode) and hidden:
        return _Box(name, "ISP router", (("port policy: probe to find out", Role.TEXT),))
    if isinstance(spec, RouterNode):
        if spec.outage:
            lines.append(("OUTAGE: nothing passes", Role.ALERT))
        for port, policy in sorted(spec.ports.items()):
            role = Role.ALLOW if policy is PortPolicy.ALLOW else Role.BLOCK
            lines.append((f"out :{port} {policy}", role))
        default_role = Role.ALLOW if spec.default is PortPolicy.ALLOW else Role.BLOCK
        others = "other ports" if spec.ports else "all ports"
        lines.append((f"{others} {spec.default}", default_role))
        return _Box(name, "ISP router", tuple(lines))
    if isinstance(spec, DnsNode):
        for zone_name, zone in spec.zones.items():
            if zone.fault is not None and not hidden:
                lines.append((f"{zone_name} {zone.fault.upper()}", Role.ALERT))
            else:
                lines.append((zone_name, Role.TEXT))
        for host, fault in ({} if hidden else spec.faults).items():
            lines.append((f"{host} {fault.upper()}", Role.ALERT))
        return _Box(name, "DNS :53", tuple(lines))
    assert isinstance(spec, MailServerNode)
    kind = "relay" if isinstance(spec, RelayNode) else "MX" if isinstance(spec, MxNode) else "SMTP"
    lines.append((spec.hostname, Role.TEXT))
    if spec.down is True and not hidden:
        lines.append(("DOWN: switched off", Role.ALERT))
    elif spec.down and not hidden:
        lines.append(("DOWN: back later", Role.ALERT))
    lines.extend((_listener_label(listener), Role.ALLOW) for listener in spec.listeners)
    return _Box(name, kind, tuple(lines))


def _box_height(box: _Box) -> int:
    return len(box.lines) + 2


def _draw_box(canvas: _Canvas, x: int, y: int, width: int, box: _Box, mark: Mark | None) -> int:
    """Draw a node box; returns its height."""
    height = _box_height(box)
    canvas.frame(x, y, width, height, _HEAVY if mark is Mark.FAIL else _LIGHT, Role.FRAME, box.name)
    marker = f"{_MARKERS[mark]} " if mark is not None else ""
    title_room = width - 4
    name = fit(box.name, title_room - len(marker))
    kind = fit(f" · {box.kind}", title_room - len(marker) - len(name))
    canvas.put(x + 1, y, " ", Role.FRAME, box.name)
    column = x + 2
    if marker:
        canvas.put(column, y, marker, Role.MARK, box.name)
        column += len(marker)
    canvas.put(column, y, name, Role.NAME, box.name)
    canvas.put(column + len(name), y, kind, Role.KIND, box.name)
    canvas.put(column + len(name) + len(kind), y, " ", Role.FRAME, box.name)
    for index, (line, role) in enumerate(box.lines, start=1):
        canvas.put(x + 2, y + index, fit(line, width - 4), role, box.name)
    return height


# --- layout ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    """Which nodes go where: customer networks with their routers, then the outside."""

    inside: tuple[str, ...]  # customer-side networks, in file order
    outside: tuple[str, ...]  # every other network
    members: Mapping[str, tuple[str, ...]]  # network -> non-router nodes on it
    routers: Mapping[str, tuple[str, ...]]  # inside network -> routers leading out of it


def _plan(scenario: Scenario) -> _Plan:
    routers: dict[str, list[str]] = {}
    for name, spec in scenario.nodes.items():
        if isinstance(spec, RouterNode):
            routers.setdefault(spec.inside, []).append(name)
    members: dict[str, list[str]] = {network: [] for network in scenario.networks}
    for name, spec in scenario.nodes.items():
        if not isinstance(spec, RouterNode):
            members.setdefault(spec.network, []).append(name)
    inside = tuple(network for network in scenario.networks if network in routers)
    outside = tuple(network for network in scenario.networks if network not in routers)
    return _Plan(
        inside,
        outside,
        {network: tuple(nodes) for network, nodes in members.items()},
        {network: tuple(names) for network, names in routers.items()},
    )


def _network_label(scenario: Scenario, network: str) -> str:
    description = scenario.networks[network].description
    return f"{network} · {description}" if description else network


def _panel(
    canvas: _Canvas,
    x: int,
    y: int,
    width: int,
    scenario: Scenario,
    network: str,
    nodes: tuple[str, ...],
    marks: Mapping[str, Mark],
    hidden: bool,
) -> int:
    """A network panel with its nodes' boxes stacked inside; returns its height."""
    boxes = [_box(name, scenario, hidden) for name in nodes]
    inner = sum(_box_height(box) for box in boxes) or 1
    height = inner + 2
    canvas.frame(x, y, width, height, _ROUND, Role.NETWORK)
    canvas.put(x + 2, y, f" {fit(_network_label(scenario, network), width - 6)} ", Role.NETWORK)
    row = y + 1
    if not boxes:
        canvas.put(x + 2, row, fit("(no lab nodes here)", width - 4), Role.NETWORK)
    for box in boxes:
        row += _draw_box(canvas, x + 1, row, width - 2, box, marks.get(box.name))
    return height


def _columns(scenario: Scenario, width: int, marks: Mapping[str, Mark], hidden: bool) -> Drawing:
    plan = _plan(scenario)
    canvas = _Canvas(width)
    link = 4  # "──▶ " between columns
    router_width = min(26, max(20, width // 5))
    rest = width - router_width - 2 * link
    left_width = max(MIN_WIDTH, rest * 9 // 20)
    right_width = rest - left_width
    router_x = left_width + link
    right_x = router_x + router_width + link

    outside_y = 0
    outside_rows: dict[str, int] = {}
    for network in plan.outside:
        outside_rows[network] = outside_y
        outside_y += _panel(
            canvas, right_x, outside_y, right_width, scenario, network,
            plan.members[network], marks, hidden,
        ) + 1  # fmt: skip

    y = 0
    for network in plan.inside:
        members = plan.members[network]
        height = _panel(canvas, 0, y, left_width, scenario, network, members, marks, hidden)
        router_y = y
        for router in plan.routers[network]:
            box = _box(router, scenario, hidden)
            router_height = _draw_box(
                canvas, router_x, router_y, router_width, box, marks.get(router)
            )
            middle = router_y + router_height // 2
            canvas.put(left_width, middle, "─" * (link - 1) + "▶", Role.LINK)
            spec = scenario.nodes[router]
            assert isinstance(spec, RouterNode)
            target_y = outside_rows.get(spec.outside)
            if target_y is not None:
                _link_right(canvas, router_x + router_width, middle, right_x, target_y)
            router_y += router_height + 1
        y = max(y + height, router_y) + 1
    return canvas.drawing(marks)


def _link_right(canvas: _Canvas, x: int, y: int, right_x: int, target_y: int) -> None:
    """An arrow from a router's right edge into an outside panel (bending if needed)."""
    if y == target_y or target_y > y:
        canvas.put(x, y, "─" * (right_x - x - 1) + "▶", Role.LINK)
        return
    # The panel starts above this router: run up beside it and enter at its top row + 1.
    bend = right_x - 2
    canvas.put(x, y, "─" * (bend - x) + "╯", Role.LINK)
    for row in range(target_y + 2, y):
        canvas.put(bend, row, "│", Role.LINK)
    canvas.put(bend, target_y + 1, "╭▶", Role.LINK)


def _stack(scenario: Scenario, width: int, marks: Mapping[str, Mark], hidden: bool) -> Drawing:
    """Boxes one under another; networks are header lines rather than panels (saves rows)."""
    plan = _plan(scenario)
    canvas = _Canvas(width)
    y = 0

    def header(network: str) -> None:
        nonlocal y
        label = f"─ {fit(_network_label(scenario, network), width - 4)} "
        canvas.put(0, y, label + "─" * (width - len(label)), Role.NETWORK)
        y += 1

    def boxes(names: tuple[str, ...], indent: int) -> None:
        nonlocal y
        for name in names:
            box = _box(name, scenario, hidden)
            y += _draw_box(canvas, indent, y, width - indent, box, marks.get(name))

    for network in plan.inside:
        header(network)
        boxes(plan.members[network], 0)
        for router in plan.routers[network]:
            spec = scenario.nodes[router]
            assert isinstance(spec, RouterNode)
            canvas.put(2, y, "▼", Role.LINK)
            y += 1
            boxes((router,), 2)
            canvas.put(2, y, fit(f"▼ to {spec.outside}", width - 2), Role.LINK)
            y += 1
    for network in plan.outside:
        header(network)
        boxes(plan.members[network], 0)
    return canvas.drawing(marks)


def draw(
    scenario: Scenario,
    width: int = 100,
    *,
    marks: Mapping[str, Mark] | None = None,
    layout: Literal["auto", "columns", "stack"] = "auto",
    client: MailSettings | None = None,
    hide_faults: bool = False,
) -> Drawing:
    """Draw `scenario`'s topology in `width` columns.

    Args:
        scenario: the scenario (only its declared networks and nodes are used:
            the drawing is the same whichever backend runs it).
        width: columns available; at least `MIN_WIDTH` are used.
        marks: node name -> mark, e.g. `{"isp": Mark.FAIL}` where the diagnosis
            found the fault.
        layout: `columns` side by side, `stack` one under another, or `auto`
            (columns when `width` allows).
        client: the mail program's current settings, when they differ from the
            scenario's (e.g. after a fix was applied).
        hide_faults: leave out port policies, outages, DNS faults and switched-off
            servers: in training the trainee must find them by probing.
    """
    width = max(width, MIN_WIDTH)
    if client is not None:
        name, node = scenario.client
        nodes = {**scenario.nodes, name: node.model_copy(update={"settings": client})}
        scenario = scenario.model_copy(update={"nodes": nodes})
    marks = dict(marks or {})
    if layout == "auto":
        layout = "columns" if width >= COLUMNS_MIN_WIDTH else "stack"
    if layout == "columns":
        return _columns(scenario, width, marks, hide_faults)
    return _stack(scenario, width, marks, hide_faults)


__all__ = ["Drawing", "Mark", "Role", "Span", "draw", "fit"]
