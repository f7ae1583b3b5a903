"""A class: two trainees work a course in training mode; the trainer's report shows both.

Real local labs, the scripted engine (so the verdict arrives at once) and the
real `smtplab training report` command reading the files the apps wrote.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.catalog import load
from lab.cli import main
from tests.tui.helpers import CATALOG, scripted_engine, text_of, wait_for
from tests.tui.test_app import SIZE, step_to_verdict, workbench
from tui.app import SmtpLabApp, make_app
from tui.screens.briefing import BriefingScreen
from tui.screens.hypothesis import HypothesisScreen
from tui.screens.library import LibraryScreen
from tui.screens.trainee import TraineeScreen
from tui.screens.workbench import WorkbenchScreen

COURSE = ("port-25-refused", "blocked-port-25")


async def work_case(pilot, app: SmtpLabApp, row: int, right: bool) -> None:  # type: ignore[no-untyped-def]
    """From the library: open the course's `row`-th case, answer right or wrong, go back."""
    await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen), what="library")
    library = app.screen
    assert isinstance(library, LibraryScreen)
    assert [s.id for s in library.shown] == list(COURSE), "the library follows the course"
    library.query_one("#scenarios").move_cursor(row=row)  # type: ignore[attr-defined]
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, BriefingScreen), what="briefing")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, WorkbenchScreen), what="workbench")
    await step_to_verdict(pilot, app)
    bench = workbench(app)
    if not bench.retake:  # first attempt: the question is asked
        question = app.screen
        assert isinstance(question, HypothesisScreen)
        expected = load(COURSE[row]).expect.diagnosis
        pick = next(i for i, c in enumerate(question.choices) if (c.entry == expected) == right)
        await pilot.press(str(pick + 1))
    await wait_for(pilot, lambda: bench.diagnosis is not None, what="the verdict")
    if bench.retake:
        assert "Your first answer counts" in text_of(bench.query_one("#verdict-body"))
    await pilot.press("escape")
    await wait_for(pilot, lambda: isinstance(app.screen, LibraryScreen), what="back to library")


async def test_two_trainees_through_a_course_and_the_class_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = {"ann": [True, False], "bob": [False, True]}
    orders = {}
    for trainee, rights in answers.items():
        app = make_app(
            None,
            "local",
            True,
            training_dir=tmp_path,
            course=COURSE,
            diagnose=scripted_engine,
            causes=lambda: CATALOG,
        )
        async with app.run_test(size=SIZE) as pilot:
            # no --trainee: the app asks (as each browser session does under --serve)
            await wait_for(
                pilot, lambda app=app: isinstance(app.screen, TraineeScreen), what="name"
            )
            await pilot.press(*trainee, "enter")
            for row, right in enumerate(rights):
                await work_case(pilot, app, row, right)
            # a retake, answered the other way, does not count: the first answer shows again
            await work_case(pilot, app, 0, not rights[0])
            await pilot.press("q")
        assert app.training is not None
        first = app.training.answered(COURSE[0])
        assert first is not None
        assert first.correct is rights[0]
        orders[trainee] = [case.choices for case in app.training.cases]
        assert app.training.user == trainee
        assert len(app.training.cases) == 2

    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 2
    assert {json.loads(f.read_text())["user"] for f in files} == {"ann", "bob"}
    assert orders["ann"] != orders["bob"], "cause choices are shuffled per trainee"

    assert main(["training", "report", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == list(COURSE), "the report follows the course"
    rows = {row["trainee"]: row for row in report["trainees"]}
    assert set(rows) == {"ann", "bob"}
    for trainee, rights in answers.items():
        got = [rows[trainee]["answers"][case]["correct"] for case in COURSE]
        assert got == rights, trainee
        assert rows[trainee]["correct"] == 1

    assert main(["training", "report", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "ann" in table
    assert "bob" in table
    assert "1/2" in table
