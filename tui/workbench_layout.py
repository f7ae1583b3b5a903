"""The workbench's widgets and how they fold: side by side from `NARROW_BELOW` columns up;
below it the settings form and the topology become a tab, so the diagnosis and its verdict
keep the width and the height (80x24 must stay usable). Also the stepper's opening text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from tui.widgets.logs import LogsView
from tui.widgets.mailboxes import MailboxesView
from tui.widgets.settings_form import SettingsForm
from tui.widgets.stepper import DiagnosisStepper
from tui.widgets.topology import TopologyView
from tui.widgets.transcript import TranscriptView
from tui.widgets.verdict import VerdictPanel
from tui.widgets.wire import WireView

if TYPE_CHECKING:
    from textual.app import ComposeResult

    from lab.runtime.base import Lab
    from lab.scenario.model import Scenario

NARROW_BELOW = 100


def settings_and_topology(scenario: Scenario, *, hide_faults: bool) -> ComposeResult:
    """The mail program's settings form above the topology (faults hidden in training)."""
    form = SettingsForm(scenario.client[1].settings, id="settings-form")
    form.border_title = "Mail program settings"
    yield form
    with VerticalScroll(id="topology-box") as box:
        box.border_title = "Topology"
        yield TopologyView(scenario, id="topology", layout="stack", hide_faults=hide_faults)


def workbench_widgets(
    scenario: Scenario, lab: Lab, *, narrow: bool, timings: bool, hide_faults: bool
) -> ComposeResult:
    """Every widget of the workbench, folded for a narrow screen."""
    yield Header()
    with Horizontal(id="workbench-body"):
        if not narrow:
            with Vertical(id="left-column"):
                yield from settings_and_topology(scenario, hide_faults=hide_faults)
        with Vertical(id="right-column"):
            stepper = DiagnosisStepper(id="stepper", timings=timings)
            stepper.border_title = "Diagnosis"
            yield stepper
            verdict = VerdictPanel(id="verdict")
            verdict.border_title = "Verdict"
            yield verdict
            with TabbedContent(id="tabs", initial="tab-transcript"):
                with TabPane("Transcript", id="tab-transcript"):
                    yield TranscriptView(
                        "No transcript yet: step the diagnosis (n) or send (s).",
                        id="transcript",
                    )
                if narrow:
                    with TabPane("Settings", id="tab-settings"):
                        yield from settings_and_topology(scenario, hide_faults=hide_faults)
                with TabPane("Mailboxes", id="tab-mail"):
                    yield MailboxesView(id="mailboxes")
                with TabPane("Logs", id="tab-logs"):
                    yield LogsView(list(lab.topology.nodes), id="logs")
                with TabPane("Wire", id="tab-wire"):
                    yield WireView(
                        "What crosses the customer's router shows here after a send, "
                        "and for each step once the diagnosis has probed.",
                        id="wire",
                    )
    yield Static("", id="status-bar")
    yield Footer()


def start_hint(*, training: bool) -> Text:
    """The stepper's text before the first step: what the walk is and its keys."""
    text = Text()
    text.append("The customer's mail program fails. ", style="bold")
    text.append(
        "The diagnosis walks the path an expert would: DNS, TCP ports, banner, EHLO, "
        "STARTTLS, AUTH, MAIL, RCPT, DATA, delivery.\n\n"
    )
    text.append("n", style="bold reverse")
    text.append(" reveal the next step   ")
    text.append("s", style="bold reverse")
    text.append(" send with the settings on the left   ")
    text.append("?", style="bold reverse")
    text.append(" help")
    if training:
        text.append("\n\nTraining: ", style="bold magenta")
        text.append("before the verdict you will pick the cause from a short list.")
    return text
