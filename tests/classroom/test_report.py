"""The class table from session files: first attempts only, course order, every output form."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lab.classroom.course import load_course, parse_cases
from lab.classroom.report import collect, to_csv, to_json, to_markdown
from lab.cli import main
from lab.errors import UsageError
from tui.training import Choice, TrainingSession

CHOICES = [Choice("port-blocked-timeout", "Port blocked"), Choice("connection-refused", "Refused")]


def answer(session: TrainingSession, scenario: str, chosen: str, expected: str) -> None:
    session.record(
        scenario=scenario,
        title=scenario,
        expected=expected,
        chosen=chosen,
        seconds=12.0,
        steps_seen=2,
        choices=CHOICES,
    )


def test_two_sessions_in_the_same_second_keep_both_files(tmp_path: Path) -> None:
    started = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)
    first = TrainingSession(directory=tmp_path, user="ann", started=started)
    second = TrainingSession(directory=tmp_path, user="ann", started=started)
    answer(first, "blocked-port-25", "port-blocked-timeout", "port-blocked-timeout")
    answer(second, "blocked-port-25", "connection-refused", "port-blocked-timeout")
    assert first.path != second.path
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_only_the_first_attempt_counts_within_and_across_sessions(tmp_path: Path) -> None:
    session = TrainingSession(directory=tmp_path, user="ann")
    answer(session, "blocked-port-25", "connection-refused", "port-blocked-timeout")
    answer(session, "blocked-port-25", "port-blocked-timeout", "port-blocked-timeout")
    assert len(session.cases) == 1
    assert session.cases[0].chosen_title == "Refused"
    assert session.cases[0].expected_title == "Port blocked"
    later = TrainingSession(directory=tmp_path, user="ann")  # a second run of the TUI
    answer(later, "blocked-port-25", "port-blocked-timeout", "port-blocked-timeout")
    report = collect(tmp_path)
    assert report.answers[("ann", "blocked-port-25")].correct is False
    assert report.score("ann") == (0, 1, 12.0)


def test_attempts_order_by_instant_not_by_text(tmp_path: Path) -> None:
    """A file with millisecond stamps and one with offsets: the earlier instant wins."""

    def session(name: str, answered: str, chosen: str) -> None:
        case = {
            "scenario": "blocked-port-25",
            "chosen": chosen,
            "expected": "port-blocked-timeout",
            "correct": chosen == "port-blocked-timeout",
            "seconds": 5.0,
            "answered": answered,
        }
        data = {"schema": "smtplab-training/1", "user": "ann", "cases": [case]}
        (tmp_path / name).write_text(json.dumps(data))

    session("a.json", "2026-12-06T04:45:00.000+00:00", "port-blocked-timeout")
    session("b.json", "2026-12-06T05:30:00.000001+01:00", "connection-refused")  # 04:30 UTC
    assert collect(tmp_path).answers[("ann", "blocked-port-25")].correct is False


def test_report_forms_follow_the_course(tmp_path: Path) -> None:
    ann = TrainingSession(directory=tmp_path, user="ann", course=("port-25-refused",))
    answer(ann, "blocked-port-25", "port-blocked-timeout", "port-blocked-timeout")
    answer(ann, "port-25-refused", "connection-refused", "connection-refused")
    bob = TrainingSession(directory=tmp_path, user="Bob")
    answer(bob, "blocked-port-25", "connection-refused", "port-blocked-timeout")
    (tmp_path / "notes.json").write_text("{}")  # not a session file: skipped, said so

    report = collect(tmp_path, ("blocked-port-25", "port-25-refused"))
    assert report.cases == ["blocked-port-25", "port-25-refused"]
    assert report.trainees == ["ann", "Bob"]
    assert report.skipped == ["notes.json: not a training session file"]
    # the course recorded in the files orders the columns when none is given
    assert collect(tmp_path).cases == ["port-25-refused", "blocked-port-25"]

    markdown = to_markdown(report).splitlines()
    assert markdown[0] == "| trainee | blocked-port-25 | port-25-refused | score | time |"
    assert markdown[2] == "| ann | ✓ 12 s | ✓ 12 s | 2/2 | 24 s |"
    assert markdown[3] == "| Bob | ✗ 12 s | - | 0/1 | 12 s |"

    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert rows[1]["trainee"] == "Bob"
    assert rows[1]["blocked-port-25"] == "wrong"
    assert rows[1]["port-25-refused"] == ""
    assert rows[0]["correct"] == "2"

    data = to_json(report)
    assert data["trainees"][1]["answers"]["blocked-port-25"]["chosen"] == "Refused"


def test_report_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["training", "report", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == f"smtplab: {tmp_path / 'nope'}: no such directory"
    assert main(["training", "report", str(tmp_path)]) == 2
    assert "no training session files" in capsys.readouterr().err
    assert main(["training", "report", str(tmp_path), "--cases", "blocked-port-52"]) == 2
    assert "did you mean 'blocked-port-25'" in capsys.readouterr().err


def test_course_from_cases_and_file(tmp_path: Path) -> None:
    assert parse_cases("happy-path, blocked-port-25").cases == ("happy-path", "blocked-port-25")
    path = tmp_path / "week1.yaml"
    path.write_text("title: Week 1\ncases: [happy-path, bad-recipient]\n")
    course = load_course(path)
    assert course.cases == ("happy-path", "bad-recipient")
    assert course.title == "Week 1"
    path.write_text("cases: [happy-path, happy-path]\n")
    with pytest.raises(UsageError, match="'happy-path' is listed twice"):
        load_course(path)
    path.write_text("lessons: [happy-path]\n")
    with pytest.raises(UsageError, match="cases: expected a list of scenario ids"):
        load_course(path)
    path.write_text("cases: [happy-path]\nlevel: 2\n")
    with pytest.raises(UsageError, match="level: unknown key"):
        load_course(path)


def test_report_json_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    session = TrainingSession(directory=tmp_path, user="ann")
    answer(session, "blocked-port-25", "port-blocked-timeout", "port-blocked-timeout")
    assert main(["training", "report", str(tmp_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trainees"][0]["trainee"] == "ann"
    assert main(["training", "report", str(tmp_path), "--csv"]) == 0
    assert capsys.readouterr().out.startswith("trainee,blocked-port-25,")
