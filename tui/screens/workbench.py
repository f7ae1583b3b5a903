"""The workbench: settings and Send, live transcript, the diagnosis stepper, verdict and fix.

Three kinds of long work run in exclusive workers, so the screen never
freezes: the diagnosis engine (its steps are buffered as they arrive and
revealed one per `n`: `tui.stepping`), a send (followed to delivery or
bounce: `tui.sending`), and the periodic re-reading of mailboxes and node
logs. The screen only routes events to widgets; the engine decides, the lab
runs, the widgets draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Static, TabbedContent

from lab.diagnosis.events import Diagnosis, Status, Step
from lab.errors import LabError
from lab.scenario.model import MailSettings, Outcome, Scenario
from tui.messages import DiagnosisEvent, DiagnosisFinished, SendFailed, SendFinished
from tui.sending import apply_remedy, outcome_text, post_send
from tui.stepping import StepFeed, post_diagnosis, step_marks, step_ports
from tui.training import CaseResult, CaseTimer, Choice
from tui.widgets.logs import LogsView
from tui.widgets.mailboxes import MailboxesView
from tui.widgets.settings_form import FormError, SettingsForm
from tui.widgets.stepper import DiagnosisStepper
from tui.widgets.topology import TopologyView
from tui.widgets.transcript import TranscriptView
from tui.widgets.verdict import VerdictPanel, answer_text
from tui.widgets.wire import WireView
from tui.workbench_layout import NARROW_BELOW, start_hint, workbench_widgets

if TYPE_CHECKING:
    from lab.runs import RunReport
    from lab.runtime.base import Lab
    from lab.wire.flows import Flow
    from tui.host import WorkbenchHost

REFRESH_SECONDS = 1.0


class WorkbenchScreen(Screen[None]):
    """Investigate one running case."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next_step", "Next step"),
        Binding("space", "next_step", "Next step", show=False),
        Binding("f", "apply_fix", "Apply fix & re-send"),
        Binding("r", "repair", "Repair the servers"),
        Binding("s", "send", "Send"),
        Binding("d", "rediagnose", "Diagnose again", show=False),
        Binding("t", "tab('tab-transcript')", "Transcript", show=False),
        # The tab bar shows these; the footer keeps room for `? Help` at 80 columns.
        Binding("m", "tab('tab-mail')", "Mailboxes", show=False),
        Binding("l", "tab('tab-logs')", "Logs", show=False),
        Binding("w", "tab('tab-wire')", "Wire", show=False),
        Binding("e", "edit", "Edit settings", show=False),
        Binding("escape", "back", "Library"),
    ]

    def __init__(self, scenario: Scenario, lab: Lab, host: WorkbenchHost) -> None:
        super().__init__(id="workbench")
        self.scenario = scenario
        self.lab = lab
        self.host = host
        self.feed = StepFeed()
        self.diagnosis: Diagnosis | None = None  # the verdict, once revealed
        self.held_verdict: Diagnosis | None = None  # arrived, waiting for the trainee's answer
        self.answer: CaseResult | None = None
        self.retake = False  # training: the case was answered earlier in the session
        self.sends = 0
        self.sending = False
        self.busy_noticed = False
        self.last_report: RunReport | None = None
        self.diagnosis_flows: list[Flow] | None = None  # what crossed the router while probing
        self.timer = CaseTimer()  # re-made with the app's clock once mounted

    @property
    def want_next(self) -> bool:
        """The trainee asked for the next step and waits for the engine to produce it."""
        return self.feed.waiting

    # --- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        narrow = self.app.size.width < NARROW_BELOW
        self.set_class(narrow, "narrow")
        yield from workbench_widgets(
            self.scenario,
            self.lab,
            narrow=narrow,
            timings=self.host.show_timings,
            hide_faults=self.host.training is not None,
        )

    def on_mount(self) -> None:
        self.sub_title = f"{self.scenario.id} · {self.scenario.title}"
        self.query_one("#verdict", VerdictPanel).display = False
        stepper = self.query_one("#stepper", DiagnosisStepper)
        stepper.reset(start_hint(training=self.host.training is not None))
        stepper.set_status(Text("n or space: reveal the next step", style="italic"))
        self.set_status(
            Text.assemble(
                ("● ", "bold green"),
                f"Lab up on the {self.lab.backend} backend · ",
                (self.scenario.title, "bold"),
            )
        )
        self.timer = CaseTimer(clock=self.host.clock)
        self.timer.start()
        training = self.host.training
        # A retake: the first answer counts, so the verdict is not asked for again.
        self.answer = training.answered(self.scenario.id) if training is not None else None
        self.retake = self.answer is not None
        self.start_diagnosis(self.scenario.client[1].settings)
        stepper.step_list.focus()
        self.refresh_timer = self.set_interval(REFRESH_SECONDS, self.refresh_lab_views)

    def set_status(self, text: Text | str) -> None:
        """The one-line status bar above the footer."""
        self.query_one("#status-bar", Static).update(text)

    # --- the diagnosis engine -------------------------------------------------------------

    def start_diagnosis(self, settings: MailSettings) -> None:
        """Run the engine (again) with `settings`; earlier runs' events are ignored."""
        self.run_engine(settings, self.feed.restart())

    @work(exclusive=True, group="diagnosis")
    async def run_engine(self, settings: MailSettings, run: int) -> None:
        """Iterate the engine, posting each step and the verdict as they come."""
        await post_diagnosis(self, self.host.diagnose, self.lab, settings, run)

    def on_diagnosis_event(self, message: DiagnosisEvent) -> None:
        if self.feed.add(message.event, message.run):
            self.reveal_next()

    def on_diagnosis_finished(self, message: DiagnosisFinished) -> None:
        if message.run != self.feed.run:
            return
        starved = self.feed.finish(message.error)
        self.diagnosis_flows = message.flows
        if message.error is not None:
            stepper = self.query_one("#stepper", DiagnosisStepper)
            stepper.set_status(Text(f"Diagnosis failed: {message.error}", style="bold red"))
        elif starved:
            self._no_more_steps()

    def action_next_step(self) -> None:
        """Reveal the next step (or the verdict); wait for the engine if it is still probing."""
        if self.held_verdict is not None:
            self.ask_cause(self.held_verdict)
            return
        if self.feed.pending:
            self.reveal_next()
            return
        stepper = self.query_one("#stepper", DiagnosisStepper)
        if self.feed.error is not None:
            self.notify(self.feed.error, title="Diagnosis failed", severity="error")
        elif self.feed.done:
            self._no_more_steps()
        else:
            self.feed.waiting = True
            stepper.set_status(Text("Probing… the next step appears when it is done", "italic"))

    def _no_more_steps(self) -> None:
        if self.diagnosis is not None:
            fix = "f: apply the fix and re-send · " if self.diagnosis.remedy.settings else ""
            hint = f"{fix}{self._repair_hint()}d: diagnose again"
            self.notify(f"The diagnosis is complete. {hint}", title="Done")
        else:
            self.notify("The engine gave no verdict.", severity="warning")

    def reveal_next(self) -> None:
        """Show the next buffered event (a run of skipped steps counts as one)."""
        event = self.feed.take()
        if isinstance(event, list):
            stepper = self.query_one("#stepper", DiagnosisStepper)
            for step in event:
                stepper.add_step(step)
            follows = "n: reveal the verdict" if self.feed.verdict_next else "n: next step"
            stepper.set_status(Text(f"Step {len(stepper.steps)} · {follows}", style="italic"))
            return
        if self.host.training is not None and self.answer is None:
            self.held_verdict = event
            self.ask_cause(event)
        else:
            self.show_verdict(event)

    def show_verdict(self, diagnosis: Diagnosis) -> None:
        """Reveal the verdict and mark the node where things went wrong."""
        self.held_verdict = None
        self.diagnosis = diagnosis
        verdict = self.query_one("#verdict", VerdictPanel)
        verdict.display = True
        verdict.show(diagnosis, answer=self._answer_text())
        stepper = self.query_one("#stepper", DiagnosisStepper)
        failed = [
            number
            for number, step in enumerate(stepper.steps, start=1)
            if step.status is Status.FAIL and step.probe == diagnosis.failed_probe
        ]
        if failed:  # back to the step that went wrong: its evidence and transcript show
            stepper.select(failed[0])
        self.refresh_bindings()  # `f` shows only where the remedy is a setting, `r` a repair
        fix = "f: apply fix & re-send · " if diagnosis.remedy.settings else ""
        hints = f"{fix}{self._repair_hint()}d: diagnose again"
        stepper.set_status(Text(f"Verdict: {diagnosis.title} · {hints}", "bold"))
        self.query_one("#topology", TopologyView).hide_faults = False  # training: now revealed
        self._update_marks()
        self.set_status(Text.assemble(("Verdict: ", "bold"), diagnosis.cause))

    def _repair_hint(self) -> str:
        return "r: repair the servers · " if self.scenario.expect.repair else ""

    # --- training -------------------------------------------------------------------------

    def expected_entry(self, diagnosis: Diagnosis) -> str:
        """The right answer: the scenario's declared diagnosis, else the engine's."""
        return self.scenario.expect.diagnosis or diagnosis.entry

    def ask_cause(self, diagnosis: Diagnosis) -> None:
        """Training: the trainee commits to a cause before the verdict is shown."""
        from tui.screens.hypothesis import HypothesisScreen

        choices = self.host.cause_choices(self.scenario, self.expected_entry(diagnosis), diagnosis)

        def picked(entry: str | None) -> None:
            if entry is None:
                stepper = self.query_one("#stepper", DiagnosisStepper)
                stepper.set_status(Text("Keep investigating · n: choose the cause", "italic"))
                return
            self.record_answer(diagnosis, entry, choices)

        self.app.push_screen(HypothesisScreen(self.scenario, choices), picked)

    def record_answer(self, diagnosis: Diagnosis, entry: str, choices: list[Choice]) -> None:
        """Save the trainee's answer, then reveal the verdict."""
        training = self.host.training
        assert training is not None
        self.answer = training.record(
            scenario=self.scenario.id,
            title=self.scenario.title,
            expected=self.expected_entry(diagnosis),
            chosen=entry,
            seconds=self.timer.elapsed(),
            steps_seen=len(self.query_one("#stepper", DiagnosisStepper).steps),
            choices=choices,
        )
        self.show_verdict(diagnosis)

    def _answer_text(self) -> Text | None:
        if self.answer is None:
            return None
        training = self.host.training
        score = str(training.score) if training is not None else None
        return answer_text(self.answer, score, retake=self.retake)

    # --- selection, marks, transcript -----------------------------------------------------

    @on(DiagnosisStepper.StepSelected)
    def _step_selected(self, event: DiagnosisStepper.StepSelected) -> None:
        step = event.step
        transcript = self.query_one("#transcript", TranscriptView)
        title = f"Transcript · step {event.number}: {step.title}"
        transcript.show(title, step.transcript)
        self._update_marks(selected=step)
        if self.diagnosis_flows is not None:
            wire_title = (
                f"Wire · step {event.number}: {step.title} (the diagnosis run's connections)"
            )
            self.query_one("#wire", WireView).show(
                wire_title, self.diagnosis_flows, step_ports(step)
            )

    def _update_marks(self, selected: Step | None = None) -> None:
        """Failures and warnings of revealed steps stay marked; the selected step's node too."""
        steps = self.query_one("#stepper", DiagnosisStepper).steps
        failed_node = self.diagnosis.node if self.diagnosis is not None else None
        marks = step_marks(steps, selected, failed_node)
        self.query_one("#topology", TopologyView).set_marks(marks)

    # --- sending --------------------------------------------------------------------------

    def action_send(self) -> None:
        """Send with the form's settings."""
        self.query_one("#settings-form", SettingsForm).request_send()

    @on(SettingsForm.SendRequested)
    def _send_requested(self, event: SettingsForm.SendRequested) -> None:
        event.stop()
        self.start_send(event.settings, fix=False)

    def action_apply_fix(self) -> None:
        """Apply the verdict's remedy to the form and send."""
        diagnosis = self.diagnosis
        if diagnosis is None:
            self.notify("Step the diagnosis to its verdict first (n).", severity="warning")
            return
        if not diagnosis.remedy.settings:
            self.notify(
                diagnosis.remedy.text, title="Not a mail-program setting", severity="warning"
            )
            return
        form = self.query_one("#settings-form", SettingsForm)
        try:
            base = form.read()
        except FormError:
            base = self.scenario.client[1].settings
        try:
            fixed = apply_remedy(diagnosis, base)
        except ValueError as error:
            self.notify(str(error), title="The remedy does not apply", severity="error")
            return
        form.load(fixed)
        self.start_send(fixed, fix=True)

    def start_send(self, settings: MailSettings, *, fix: bool) -> None:
        """Send in a worker; the transcript tab says what is going on meanwhile."""
        if self.sending:
            # One notice per send, however often s or f is pressed meanwhile.
            if not self.busy_noticed:
                self.busy_noticed = True
                self.notify("A send is still running.", severity="warning")
            return
        self.busy_noticed = False
        self.sending = True
        self.sends += 1
        self.query_one("#topology", TopologyView).client = settings
        label = "re-send with the fix" if fix else "send"
        self.query_one("#tabs", TabbedContent).active = "tab-transcript"
        self.query_one("#transcript", TranscriptView).show_note(
            f"Transcript · {label} #{self.sends}",
            f"Sending to {settings.server}:{settings.port} ({settings.security}) … "
            f"the connect timeout is {settings.timeout:g} s",
        )
        self.set_status(Text(f"Sending ({label}) to {settings.server}:{settings.port}…", "italic"))
        self.run_send(settings, fix)

    @work(exclusive=True, group="send")
    async def run_send(self, settings: MailSettings, fix: bool) -> None:
        """Send once and follow the message to its fate."""
        await post_send(self, self.lab, settings, fix)

    def on_send_finished(self, message: SendFinished) -> None:
        self.sending = False
        report = message.report
        self.last_report = report
        label = "re-send with the fix" if message.fix else "send"
        summary = outcome_text(report)
        stages = {str(stage): seconds for stage, seconds in report.send.timings.items()}
        self.query_one("#transcript", TranscriptView).show(
            f"Transcript · {label} #{self.sends} · {report.outcome}",
            report.send.transcript.lines,
            stages=stages if self.host.show_timings else None,
            footer=summary,
        )
        if message.flows is not None:
            self.query_one("#wire", WireView).show(
                f"Wire · {label} #{self.sends} · {report.outcome}", message.flows
            )
        status = Text.assemble(("Last send: ", "bold"), summary)
        if report.outcome is Outcome.DELIVERED:
            status.append("  (m: mailboxes)", style="dim")
        self.set_status(status)
        if message.fix:
            self.query_one("#verdict", VerdictPanel).show_fix(
                Text.assemble(("Fix applied and re-sent: ", "bold"), summary)
            )
            training = self.host.training
            if training is not None and self.answer is not None:
                training.fix_result(self.scenario.id, report.outcome is Outcome.DELIVERED)
        self.refresh_lab_views(force=True)

    def on_send_failed(self, message: SendFailed) -> None:
        self.sending = False
        self.query_one("#transcript", TranscriptView).show_note("Send failed", message.error)
        self.set_status(Text(f"Send failed: {message.error}", style="bold red"))

    # --- mailboxes and logs ---------------------------------------------------------------

    def refresh_lab_views(self, force: bool = False) -> None:
        """Re-read mailboxes and logs (only the visible tab, unless forced)."""
        active = self.query_one("#tabs", TabbedContent).active
        if force or active == "tab-mail":
            self.read_lab_views(mail=True, logs=force or active == "tab-logs")
        elif active == "tab-logs":
            self.read_lab_views(mail=False, logs=True)

    @work(exclusive=True, group="lab-views")
    async def read_lab_views(self, mail: bool, logs: bool) -> None:
        """Read files off the event loop's critical path (a thread: docker reads block)."""
        import asyncio

        from tui.labdata import collect_logs, collect_mail

        if mail:
            items = await asyncio.to_thread(collect_mail, self.lab)
            self.query_one("#mailboxes", MailboxesView).update_items(items)
        if logs:
            entries = await asyncio.to_thread(collect_logs, self.lab)
            self.query_one("#logs", LogsView).update_entries(entries)

    @on(TabbedContent.TabActivated, "#tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.refresh_lab_views()

    def action_tab(self, tab: str) -> None:
        """Show one of the tabs."""
        self.query_one("#tabs", TabbedContent).active = tab

    # --- other actions --------------------------------------------------------------------

    def action_rediagnose(self) -> None:
        """Start the diagnosis again with the settings in the form."""
        try:
            settings = self.query_one("#settings-form", SettingsForm).read()
        except FormError as error:
            self.notify(str(error), title="Check the settings", severity="error")
            return
        self.diagnosis = None
        self.held_verdict = None
        verdict = self.query_one("#verdict", VerdictPanel)
        verdict.display = False
        stepper = self.query_one("#stepper", DiagnosisStepper)
        stepper.reset(Text("Diagnosing the settings in the form… n: first step", "italic"))
        stepper.set_status(Text("n or space: reveal the next step", style="italic"))
        self.query_one("#topology", TopologyView).clear_marks()
        self.start_diagnosis(settings)
        stepper.step_list.focus()

    def action_edit(self) -> None:
        """Jump to the settings form."""
        if self.has_class("narrow"):
            self.action_tab("tab-settings")
        self.query_one("#server").focus()

    def action_repair(self) -> None:
        """After the verdict: the same case with the servers changed as `expect.repair`
        says (a renewed certificate, a published PTR), in a fresh lab, diagnosed anew."""
        if self.diagnosis is None or not self.scenario.expect.repair:
            return
        from lab.scenario.repair import repaired

        changed = ", ".join(self.scenario.expect.repair)
        self.set_status(Text(f"Repairing {changed}: the lab restarts…", style="bold yellow"))
        self.refresh_timer.pause()  # the running lab goes down under the views
        self.workers.cancel_group(self, "diagnosis")
        self.workers.cancel_group(self, "send")
        self.bring_up_repaired(repaired(self.scenario))

    @work(exclusive=True, group="repair")
    async def bring_up_repaired(self, scenario: Scenario) -> None:
        """Start the repaired lab through the host, then show its workbench."""
        try:
            lab = await self.host.bring_up(scenario)
        except LabError as error:
            self.notify(str(error), title="The repaired lab did not start", severity="error")
            self.host.close_workbench()
            return
        self.host.open_workbench(scenario, lab)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`f` is offered only where the remedy is a mail-program setting (greyed before the
        verdict; not at all for, e.g., greylisting, where waiting is the remedy); `r` only
        where the case says how its servers are repaired, after the verdict."""
        if action == "apply_fix":
            if self.diagnosis is None:
                return None
            return bool(self.diagnosis.remedy.settings)
        if action == "repair":
            if not self.scenario.expect.repair:
                return False
            return None if self.diagnosis is None else True
        return True

    def action_back(self) -> None:
        """Leave a form field; from elsewhere, back to the library (the lab goes down)."""
        form = self.query_one("#settings-form", SettingsForm)
        if self.focused is not None and form in self.focused.ancestors_with_self:
            self.query_one("#stepper", DiagnosisStepper).step_list.focus()
            return
        self.host.close_workbench()
