"""The TUI driven headless with Pilot through the real flow on the local backend.

Open `blocked-port-25` from the library, start it, step the real diagnosis
with `n` to the verdict, apply the fix with `f`, see the delivery; training
mode; `q` (and every other way out) leaves no lab behind.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from textual.widgets import Input, TabbedContent

from lab.diagnosis.events import Diagnosis, Remedy
from lab.errors import LabStartError
from lab.runtime.local import LocalLab
from lab.scenario.model import Outcome
from tests.tui.helpers import CATALOG, idle_engine, scripted_engine, text_of, wait_for
from tui.app import SmtpLabApp, make_app
from tui.screens.briefing import BriefingScreen
from tui.screens.help import HelpScreen
from tui.screens.hypothesis import HypothesisScreen
from tui.screens.library import LibraryScreen
from tui.screens.training_summary import TrainingSummaryScreen
from tui.screens.workbench import WorkbenchScreen
from tui.topology_art import Mark
from tui.widgets.mailboxes import MailboxesView
from tui.widgets.topology import TopologyView

SIZE = (120, 40)


def workbench(app: SmtpLabApp) -> WorkbenchScreen:
    """The workbench, also when a modal (training question, help) is over it."""
    for screen in reversed(app.screen_stack):
        if isinstance(screen, WorkbenchScreen):
            return screen
    raise AssertionError(f"no workbench; on {type(app.screen).__name__}")


async def start_case(pilot, app: SmtpLabApp) -> LocalLab:  # type: ignore[no-untyped-def]
    """From the briefing: Enter starts the lab; returns it once the workbench shows."""
    await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen), what="briefing")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, WorkbenchScreen), what="workbench")
    lab = app.lab
    assert isinstance(lab, LocalLab)
    assert lab.root.is_dir()
    return lab


async def step_to_verdict(pilot, app: SmtpLabApp) -> None:  # type: ignore[no-untyped-def]
    """Press n until the verdict shows (or the training question)."""
    for _ in range(30):
        if isinstance(app.screen, HypothesisScreen) or workbench(app).diagnosis is not None:
            return
        await pilot.press("n")
        screen = app.screen
        await wait_for(
            pilot,
            lambda screen=screen: not isinstance(screen, WorkbenchScreen) or not screen.want_next,
            what="the next diagnosis event",
        )
    raise AssertionError("no verdict after 30 steps")


async def test_real_flow_blocked_port_25() -> None:
    """Library → briefing → lab → n… → verdict → f → delivered → q: no lab left."""
    app = make_app(backend="local")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, LibraryScreen)
        await pilot.press(*"blocked-port")  # type-to-filter from the list
        assert app.screen.query_one("#filter").value == "blocked-port"  # type: ignore[attr-defined]
        await pilot.press("enter")
        lab = await start_case(pilot, app)
        bench = workbench(app)

        await step_to_verdict(pilot, app)
        diagnosis = bench.diagnosis
        assert diagnosis is not None
        assert diagnosis.entry == "port-blocked-timeout"
        assert "25" in diagnosis.cause
        steps = bench.query_one("#stepper").steps  # type: ignore[attr-defined]
        assert steps, "the verdict came after at least one step"
        assert diagnosis.node == "isp", "the ISP router drops port 25"
        assert bench.query_one("#topology", TopologyView).marks.get("isp") is Mark.FAIL

        await pilot.press("f")
        await wait_for(pilot, lambda: bench.last_report is not None and not bench.sending)
        report = bench.last_report
        assert report is not None
        assert report.outcome is Outcome.DELIVERED, report.text
        assert report.settings.port == 587

        await pilot.press("m")
        mailboxes = bench.query_one("#mailboxes", MailboxesView)
        await wait_for(
            pilot,
            lambda: any(i.mailbox == "bob@example.net" for i in mailboxes.items),
            what="bob's mailbox to show the message",
        )
        assert not any(item.is_bounce for item in mailboxes.items)

        await pilot.press("q")
        await pilot.pause()
    assert app.lab is None
    assert not lab.root.exists(), "q must take the lab down"


async def test_training_mode_records_the_answer(tmp_path: Path) -> None:
    """Pick the right cause before the verdict: right answer, score, saved file, summary.

    The real engine and the real fault catalog: the short list is drawn from it.
    """
    app = make_app("blocked-port-25", "local", True, training_dir=tmp_path, trainee="ann")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen), what="briefing")
        briefing_map = app.screen.query_one("#briefing-topology", TopologyView)
        assert "out :25" not in briefing_map.drawing(100).text(), "training hides the fault"
        lab = await start_case(pilot, app)
        hidden = workbench(app).query_one("#topology", TopologyView).drawing(60).text()
        assert "out :25" not in hidden, "not before the trainee has probed"
        await step_to_verdict(pilot, app)
        question = app.screen
        assert isinstance(question, HypothesisScreen)
        assert len(question.choices) == 4
        # look-alikes of a blocked port: other failures of the ports probe
        ports_failures = {
            "connection-refused",
            "network-unreachable",
            "host-unreachable",
            "port-filtered",
            "connect-timeout-everywhere",
        }
        assert {c.entry for c in question.choices} - {"port-blocked-timeout"} <= ports_failures
        right = [c.entry for c in question.choices].index("port-blocked-timeout")
        await pilot.press(str(right + 1))
        bench = workbench(app)
        assert bench.answer is not None
        assert bench.answer.correct
        drawn = bench.query_one("#topology", TopologyView).drawing(60).text()
        assert "out :25 drop" in drawn, "the fault shows once the verdict is revealed"
        assert bench.diagnosis is not None, "the verdict is revealed after the answer"
        assert app.training is not None
        assert str(app.training.score) == "1/1 correct (100%)"

        saved = json.loads(app.training.path.read_text())
        assert saved["score"]["correct"] == 1
        assert saved["cases"][0]["scenario"] == "blocked-port-25"
        assert saved["cases"][0]["correct"] is True

        await pilot.press("escape")  # back to the library: the lab goes down
        await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen))
        await wait_for(pilot, lambda: not lab.root.exists(), what="the lab to go down")
        await pilot.press("ctrl+t")
        assert isinstance(app.screen, TrainingSummaryScreen)
        assert "Score: 1/1 correct (100%)" in text_of(app.screen.query_one("#summary-score"))
        assert str(app.training.path) in text_of(app.screen.query_one("#summary-file"))
        await pilot.press("q")
    assert app.exit_message() is not None


async def test_training_wrong_answer_is_recorded(tmp_path: Path) -> None:
    """A wrong pick is saved as wrong, with the right answer shown."""
    app = make_app(
        "blocked-port-25",
        "local",
        True,
        training_dir=tmp_path,
        trainee="bob",
        diagnose=scripted_engine,
        causes=lambda: CATALOG,
    )
    async with app.run_test(size=SIZE) as pilot:
        await start_case(pilot, app)
        await step_to_verdict(pilot, app)
        question = app.screen
        assert isinstance(question, HypothesisScreen)
        wrong = next(i for i, c in enumerate(question.choices) if c.entry != "port-blocked-timeout")
        await pilot.press(str(wrong + 1))
        bench = workbench(app)
        assert bench.answer is not None
        assert not bench.answer.correct
        assert app.training is not None
        assert app.training.score.correct == 0
        feedback = text_of(bench.query_one("#verdict-body"))
        # causes by title, not by catalog id
        assert "the cause is Outbound port blocked (connect timeout)" in feedback
        assert "port-blocked-timeout" not in feedback
        await pilot.press("q")
    saved = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert saved["cases"][0]["correct"] is False
    assert saved["cases"][0]["expected"] == "port-blocked-timeout"


async def test_quit_while_diagnosing_takes_the_lab_down() -> None:
    """q with the engine still probing: the worker is cancelled and the lab removed."""
    app = make_app("blocked-port-25", "local", False, diagnose=idle_engine)
    async with app.run_test(size=SIZE) as pilot:
        lab = await start_case(pilot, app)
        await pilot.press("q")
        await pilot.pause()
    assert not lab.root.exists()


async def test_lab_start_failure_is_a_message_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A backend that cannot start shows one clear line in the briefing; the app goes on."""

    class Broken:
        name = "local"

        def plan(self, scenario):  # type: ignore[no-untyped-def]
            from lab.topology import resolve

            return resolve(scenario)

        async def up(self, topology):  # type: ignore[no-untyped-def]
            raise LabStartError("relay did not become ready: port 587 never answered")

    monkeypatch.setattr("lab.runtime.get_backend", lambda name=None, **_: Broken())
    app = make_app("blocked-port-25", "local", False, diagnose=idle_engine)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen))
        await pilot.click("#start")  # the mouse works too
        screen = app.screen
        assert isinstance(screen, BriefingScreen)
        await wait_for(pilot, lambda: not screen.starting, what="the start to fail")
        status = text_of(screen.query_one("#start-status"))
        assert "Could not start the lab" in status
        assert "port 587 never answered" in status
        assert "Traceback" not in status
        assert app.lab is None
        await pilot.press("escape")
        assert isinstance(app.screen, LibraryScreen)


async def test_scripted_steps_reveal_one_by_one() -> None:
    """Each n reveals exactly one step; the failing step marks the ISP; f re-sends for real."""
    app = make_app("blocked-port-25", "local", False, diagnose=scripted_engine)
    async with app.run_test(size=SIZE) as pilot:
        await start_case(pilot, app)
        bench = workbench(app)
        stepper = bench.query_one("#stepper")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(stepper.steps) == 1)  # type: ignore[attr-defined]
        await pilot.press("space")
        await wait_for(pilot, lambda: len(stepper.steps) == 2)  # type: ignore[attr-defined]
        assert bench.query_one("#topology", TopologyView).marks == {"isp": Mark.FAIL}
        assert "connect timed out" in text_of(bench.query_one("#transcript-body"))
        await pilot.press("f")  # no verdict yet: nothing happens but a hint
        assert bench.sends == 0
        await pilot.press("n", "n")
        assert bench.diagnosis is not None
        await pilot.press("f")
        await wait_for(pilot, lambda: bench.last_report is not None and not bench.sending)
        assert bench.last_report is not None
        assert bench.last_report.outcome is Outcome.DELIVERED
        await pilot.press("q")


async def test_help_and_form_errors_on_the_workbench() -> None:
    """? lists the workbench's keys; a bad port is reported in place, Escape leaves the field.

    One app for both: every app session costs seconds on a busy 2-core machine.
    """
    app = make_app("blocked-port-25", "local", False, diagnose=idle_engine)
    async with app.run_test(size=SIZE) as pilot:
        await start_case(pilot, app)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        keys = text_of(app.screen.query_one("#help-keys"))
        for words in ("n / space", "Next step", "Apply fix & re-send", "Quit", "Mailboxes"):
            assert words in keys
        for textual_own in ("ctrl+q", "Focus Next", "Copy selected text"):
            assert textual_own not in keys, "Textual's own keys are not listed as the app's"
        await pilot.press("escape")
        assert isinstance(app.screen, WorkbenchScreen)

        bench = workbench(app)
        port = bench.query_one("#port")
        port.value = "0"  # type: ignore[attr-defined]
        await pilot.press("s")
        assert "port" in text_of(bench.query_one("#form-error"))
        assert app.focused is port
        assert bench.sends == 0
        await pilot.press("escape")  # leaves the field, not the lab
        assert isinstance(app.screen, WorkbenchScreen)
        assert app.focused is not port
        await pilot.press("q")


async def test_q_quits_from_the_library_after_filtering() -> None:
    """Type to filter, Escape, q: the app quits (q is not typed into the filter)."""
    app = make_app(None, "local", False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"port")
        assert app.screen.query_one("#filter", Input).value == "port"
        await pilot.press("escape", "q")
        await pilot.pause()
    assert not app.is_running


async def test_narrow_workbench_folds_settings_and_offers_f_only_for_settings() -> None:
    """At 80x24 settings and topology are a tab; a remedy that is no setting hides `f`."""

    async def no_setting_engine(lab, settings):  # type: ignore[no-untyped-def]
        async for event in scripted_engine(lab, settings):
            if isinstance(event, Diagnosis):
                event = replace(event, remedy=Remedy("Wait: the server greylists.", {}))
            yield event

    app = make_app("blocked-port-25", "local", False, diagnose=no_setting_engine)
    async with app.run_test(size=(80, 24)) as pilot:
        await start_case(pilot, app)
        bench = workbench(app)
        assert bench.has_class("narrow")
        assert not bench.query("#left-column")
        assert bench.query_one("#settings-form").parent.id == "tab-settings"  # type: ignore[union-attr]
        bench.action_edit()
        await pilot.pause()
        assert bench.query_one("#tabs", TabbedContent).active == "tab-settings"
        await pilot.press("escape")
        await step_to_verdict(pilot, app)
        await pilot.pause()
        assert bench.query_one("#stepper").region.height >= 6, "the diagnosis stays in view"
        assert bench.query_one("#verdict").region.height > 2
        assert bench.check_action("apply_fix", ()) is False, "no f where waiting is the remedy"
        assert "f:" not in text_of(bench.query_one("#stepper #stepper-status"))
        await pilot.press("q")


async def test_library_lists_the_good_and_shows_the_broken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A broken file (markup-like text in its error, a FIFO) does not stop the library: the
    good case is listed, each broken one is shown as broken with its error, as plain text."""
    import dataclasses
    import os
    import shutil

    from lab.config import settings

    shutil.copyfile(settings.scenarios_dir / "happy-path.yaml", tmp_path / "happy-path.yaml")
    (tmp_path / "markup.yaml").write_text('title: "[/bold]"\nlevel: "[red]x"\n')
    os.mkfifo(tmp_path / "pipe.yaml")
    monkeypatch.setattr(
        "lab.catalog.settings", dataclasses.replace(settings, scenarios_dir=tmp_path)
    )
    app = make_app(backend="local")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, LibraryScreen)
        assert [scenario.id for scenario in screen.scenarios] == ["happy-path"]
        errors = text_of(screen.query_one("#library-errors"))
        assert f"broken: {tmp_path / 'markup.yaml'}:2: level:" in errors
        assert "(got '[red]x')" in errors  # shown as written, not taken as markup
        assert f"broken: {tmp_path / 'pipe.yaml'}: not a regular file (a FIFO)" in errors


async def test_r_repairs_the_servers_and_the_mail_goes_through() -> None:
    """missing-ptr: no mail-program setting helps; `r` restarts the lab with the PTR record
    published (the case's `expect.repair`), and the repaired world delivers."""
    app = make_app("missing-ptr", "local", False)
    async with app.run_test(size=SIZE) as pilot:
        first = await start_case(pilot, app)
        bench = workbench(app)
        assert bench.check_action("repair", ()) is None, "greyed before the verdict"
        await step_to_verdict(pilot, app)
        assert bench.diagnosis is not None
        assert bench.diagnosis.entry == "no-ptr"
        assert bench.check_action("repair", ()) is True
        assert "r: repair the servers" in text_of(bench.query_one("#stepper #stepper-status"))
        await pilot.press("r")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, WorkbenchScreen) and app.screen is not bench,
            what="the repaired lab's workbench",
        )
        repaired = workbench(app)
        assert not first.root.exists(), "the unrepaired lab is down"
        assert repaired.scenario.expect.repair == {}
        assert repaired.check_action("repair", ()) is False, "nothing left to repair"
        await step_to_verdict(pilot, app)
        assert repaired.diagnosis is not None
        assert repaired.diagnosis.entry == "healthy"
        await pilot.press("q")
        await pilot.pause()
    assert app.lab is None
