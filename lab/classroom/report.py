"""The class table: every trainee's first answer to every case, read from the session files.

The TUI in training mode saves one JSON file per session (`tui.training`);
a trainer collects a directory of them. Only a trainee's *first* answer to a
case counts, across all their sessions (ordered by when each answer was
given), so retaking a case cannot improve a score. Columns follow the course
when one is given (or recorded in the files), else the order cases were first
answered in.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.errors import UsageError

SCHEMA = "smtplab-training/1"


@dataclass(frozen=True)
class Answer:
    """A trainee's first answer to one case."""

    correct: bool
    seconds: float
    chosen: str
    expected: str
    answered: str  # ISO time, for ordering attempts across sessions


@dataclass
class ClassReport:
    """Trainees by cases, and the files that could not be read."""

    cases: list[str]
    trainees: list[str]
    answers: dict[tuple[str, str], Answer]
    skipped: list[str] = field(default_factory=list)  # "file: why", one per unreadable file

    def score(self, trainee: str) -> tuple[int, int, float]:
        """Right answers, answered cases and seconds in all for `trainee`."""
        mine = [a for (who, _), a in self.answers.items() if who == trainee]
        return sum(a.correct for a in mine), len(mine), sum(a.seconds for a in mine)


def _sessions(directory: Path) -> tuple[list[dict[str, Any]], list[str]]:
    sessions: list[dict[str, Any]] = []
    skipped: list[str] = []
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            skipped.append(f"{path.name}: unreadable ({error})")
            continue
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            skipped.append(f"{path.name}: not a training session file")
            continue
        sessions.append(data)
    return sessions, skipped


def collect(directory: Path, course: tuple[str, ...] = ()) -> ClassReport:
    """Read every session file under `directory` into the class table.

    Raises:
        UsageError: no such directory, or no session file in it.
    """
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory")
    sessions, skipped = _sessions(directory)
    if not sessions:
        raise UsageError(f"{directory}: no training session files (smtplab tui --training)")
    attempts: list[tuple[str, str, str, dict[str, Any]]] = []
    recorded_course: list[str] = []
    for session in sessions:
        trainee = str(session.get("user") or "trainee")
        started = str(session.get("started", ""))
        for case in session.get("course") or []:
            if case not in recorded_course:
                recorded_course.append(str(case))
        for index, case in enumerate(session.get("cases") or []):
            when = str(case.get("answered") or f"{started}#{index:04d}")
            attempts.append((when, trainee, str(case.get("scenario")), case))
    attempts.sort(key=lambda attempt: _moment(attempt[0]))
    answers: dict[tuple[str, str], Answer] = {}
    trainees: list[str] = []
    answered_cases: list[str] = []
    for when, trainee, scenario, case in attempts:
        if trainee not in trainees:
            trainees.append(trainee)
        if scenario not in answered_cases:
            answered_cases.append(scenario)
        answers.setdefault(
            (trainee, scenario),
            Answer(
                correct=bool(case.get("correct")),
                seconds=float(case.get("seconds") or 0.0),
                chosen=str(case.get("chosen_title") or case.get("chosen", "")),
                expected=str(case.get("expected_title") or case.get("expected", "")),
                answered=when,
            ),
        )
    order = list(course or recorded_course)
    cases = order + [case for case in answered_cases if case not in order]
    return ClassReport(cases, sorted(trainees, key=str.lower), answers, skipped)


def _moment(when: str) -> tuple[datetime, str]:
    """Sortable time of an answer: files written with millisecond and with microsecond
    stamps compare by instant, not as text; an unreadable stamp sorts first, as written."""
    stamp = when.split("#", 1)[0]
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC), when
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment, when


def _cell(answer: Answer | None) -> str:
    if answer is None:
        return "-"
    return f"{'✓' if answer.correct else '✗'} {answer.seconds:.0f} s"


def rows(report: ClassReport) -> list[list[str]]:
    """The table as text: a header row, then one row per trainee."""
    table = [["trainee", *report.cases, "score", "time"]]
    for trainee in report.trainees:
        correct, total, seconds = report.score(trainee)
        cells = [_cell(report.answers.get((trainee, case))) for case in report.cases]
        table.append([trainee, *cells, f"{correct}/{total}", f"{seconds:.0f} s"])
    return table


def to_markdown(report: ClassReport) -> str:
    """A Markdown table for a handout."""
    header, *body = rows(report)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines) + "\n"


def to_csv(report: ClassReport) -> str:
    """One row per trainee: per case `right`/`wrong`/empty and its seconds, then the score."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["trainee"]
    for case in report.cases:
        header += [case, f"{case} seconds"]
    writer.writerow([*header, "correct", "answered", "seconds"])
    for trainee in report.trainees:
        row = [trainee]
        for case in report.cases:
            answer = report.answers.get((trainee, case))
            if answer is None:
                row += ["", ""]
            else:
                row += ["right" if answer.correct else "wrong", f"{answer.seconds:.1f}"]
        correct, total, seconds = report.score(trainee)
        writer.writerow([*row, correct, total, f"{seconds:.1f}"])
    return buffer.getvalue()


def to_json(report: ClassReport) -> dict[str, Any]:
    """The table for scripts: cases in order, and per trainee the first answers and the score."""
    trainees = []
    for trainee in report.trainees:
        correct, total, seconds = report.score(trainee)
        answers = {
            case: {
                "correct": answer.correct,
                "seconds": answer.seconds,
                "chosen": answer.chosen,
                "expected": answer.expected,
            }
            for case in report.cases
            if (answer := report.answers.get((trainee, case))) is not None
        }
        trainees.append(
            {
                "trainee": trainee,
                "correct": correct,
                "answered": total,
                "seconds": round(seconds, 1),
                "answers": answers,
            }
        )
    return {"cases": report.cases, "trainees": trainees, "skipped": report.skipped}


__all__ = ["SCHEMA", "Answer", "ClassReport", "collect", "rows", "to_csv", "to_json", "to_markdown"]
