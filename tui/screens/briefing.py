"""The briefing: the customer's ticket, the topology, and "Start lab".

Starting runs in an exclusive worker so the screen stays responsive; while
the lab comes up the screen says which backend it is using, and a failure is
shown here as one clear message (the trainee can retry or go back), never as
a traceback. Leaving the screen during start-up cancels the worker, and the
backend removes whatever it had started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, LoadingIndicator, Static

from lab.errors import LabError
from lab.scenario.model import Scenario
from tui.messages import LabFailed, LabProgress, LabReady
from tui.widgets.topology import TopologyView

if TYPE_CHECKING:
    from tui.host import BriefingHost


def settings_summary(scenario: Scenario) -> Text:
    """What the customer's mail program is configured with (the password never shown)."""
    settings = scenario.client[1].settings
    text = Text()
    text.append("Mail program: ", style="bold")
    text.append(f"{settings.server}:{settings.port}, security {settings.security}, ")
    text.append(f"auth as {settings.auth.user}" if settings.auth else "no auth")
    text.append(f", from {settings.sender} to {', '.join(settings.to)}")
    return text


def reflow(text: str) -> str:
    """Paragraphs as flowing text: a ticket's hard line breaks would wrap twice when narrow."""
    paragraphs = text.strip().split("\n\n")
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in paragraphs)


class BriefingScreen(Screen[None]):
    """Read the ticket, look at the network, start the lab."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # priority: the focused button's own Enter would hide it from the footer.
        Binding("enter", "start", "Start lab", show=True, priority=True),
        Binding("escape", "back", "Back to library", show=True),
    ]

    def __init__(self, scenario: Scenario, host: BriefingHost) -> None:
        super().__init__(id="briefing")
        self.scenario = scenario
        self.host = host
        self.starting = False

    def compose(self) -> ComposeResult:
        scenario = self.scenario
        yield Header()
        with VerticalScroll(id="briefing-body"):
            heading = Text()
            heading.append(scenario.title, style="bold")
            heading.append(f"\n{scenario.id} · {scenario.level}", style="dim")
            if scenario.tags:
                heading.append(f" · {', '.join(scenario.tags)}", style="dim")
            yield Static(heading, id="case-title")
            ticket = Static(reflow(scenario.ticket), id="ticket")
            ticket.border_title = "Customer ticket"
            yield ticket
            yield Static(settings_summary(scenario), id="client-settings")
            training = self.host.training is not None
            topology = TopologyView(scenario, id="briefing-topology", hide_faults=training)
            topology.border_title = "Topology"
            yield topology
        with Vertical(id="start-panel"):
            with Horizontal(id="start-bar"):
                yield Button("Start lab", id="start", variant="primary")
                yield Button("Back", id="back")
                yield Static("", id="start-status")
            yield LoadingIndicator(id="start-progress")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = f"Briefing · {self.scenario.id}"
        self.query_one("#start-progress").display = False
        self.query_one("#start-status", Static).update(
            Text(f"Backend: {self.host.backend_label}", style="dim")
        )
        self.query_one("#start", Button).focus()

    # --- starting -------------------------------------------------------------------------

    @on(Button.Pressed, "#start")
    def _start_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_start()

    @on(Button.Pressed, "#back")
    def _back_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.action_back()

    def action_start(self) -> None:
        """Bring the lab up (once; again after a failure); Enter on Back goes back."""
        if self.focused is not None and self.focused.id == "back":
            self.action_back()
            return
        if self.starting:
            return
        self.starting = True
        self.query_one("#start", Button).disabled = True
        self.query_one("#start-progress").display = True
        status = Text()
        status.append(f"Starting {self.scenario.id} on the {self.host.backend_label} backend…")
        self.query_one("#start-status", Static).update(status)
        self.start_lab()

    @work(exclusive=True, group="lab-start")
    async def start_lab(self) -> None:
        """Bring the lab up; post `LabReady` or `LabFailed` (with a message, not a traceback)."""

        def progress(line: str) -> None:
            # post_message is thread-safe: the docker backend reports from its build thread.
            self.post_message(LabProgress(line))

        try:
            lab = await self.host.bring_up(self.scenario, progress=progress)
        except LabError as error:
            self.post_message(LabFailed(self.scenario, str(error)))
        except Exception as error:  # anything else is still shown in the app, not thrown out
            self.log.error("lab start failed", error)
            self.post_message(LabFailed(self.scenario, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(LabReady(self.scenario, lab))

    def on_lab_progress(self, message: LabProgress) -> None:
        if not self.starting:
            return
        status = Text()
        status.append(f"Starting {self.scenario.id} on the {self.host.backend_label} backend…")
        status.append(f"\n{message.line}", style="dim")
        self.query_one("#start-status", Static).update(status)

    def on_lab_ready(self, message: LabReady) -> None:
        self.starting = False
        self.host.open_workbench(message.scenario, message.lab)

    def on_lab_failed(self, message: LabFailed) -> None:
        self.starting = False
        self.query_one("#start-progress").display = False
        start = self.query_one("#start", Button)
        start.disabled = False
        start.label = "Try again"
        start.focus()
        text = Text()
        text.append("Could not start the lab: ", style="bold red")
        text.append(message.error, style="red")
        text.append("\nEnter: try again · Escape: back to the library", style="dim")
        self.query_one("#start-status", Static).update(text)

    def action_back(self) -> None:
        """Back to the library (cancels a start in progress; the backend cleans up)."""
        self.workers.cancel_group(self, "lab-start")
        self.dismiss()
