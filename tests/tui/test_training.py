"""Training: the short list, scoring, and the session file a trainer collects."""

from __future__ import annotations

import json
from pathlib import Path

from tests.tui.helpers import CATALOG, Entry
from tui.training import CaseTimer, Choice, TrainingSession, short_list


def test_short_list_has_the_right_cause_and_three_lookalikes() -> None:
    choices = short_list("port-blocked-timeout", CATALOG, probe="ports", tags=["network"])
    ids = [choice.entry for choice in choices]
    assert len(ids) == 4
    assert len(set(ids)) == 4
    assert "port-blocked-timeout" in ids
    # the other port failure shares the probe and tag: it must be among the distractors
    assert "connection-refused" in ids


def test_short_list_is_deterministic_per_case_and_shuffled() -> None:
    first = short_list("port-blocked-timeout", CATALOG, probe="ports", seed="blocked-port-25")
    again = short_list("port-blocked-timeout", CATALOG, probe="ports", seed="blocked-port-25")
    assert first == again
    positions = {
        [c.entry for c in short_list(entry.id, CATALOG, seed=entry.id)].index(entry.id)
        for entry in CATALOG
    }
    assert len(positions) > 1, "the right answer must not always sit in the same place"


def test_short_list_with_a_small_or_missing_catalog() -> None:
    assert short_list("x", [], seed="s") == [Choice("x", "x")]
    choices = short_list("a", [Entry("a", "A"), Entry("b", "B")])
    assert {c.entry for c in choices} == {"a", "b"}


def test_session_records_scores_and_saves(tmp_path: Path) -> None:
    session = TrainingSession(directory=tmp_path, user="ann smith")
    session.record(
        scenario="blocked-port-25",
        title="t",
        expected="port-blocked-timeout",
        chosen="port-blocked-timeout",
        seconds=42.04,
        steps_seen=3,
        choices=[Choice("port-blocked-timeout", "P")],
    )
    session.record(
        scenario="relay-denied",
        title="t",
        expected="relay-denied",
        chosen="auth-required",
        seconds=10,
        steps_seen=5,
    )
    session.fix_result("blocked-port-25", verified=True)
    assert str(session.score) == "1/2 correct (50%)"
    assert session.path.parent == tmp_path
    assert "-ann_smith-" in session.path.name  # safe in a file name
    data = json.loads(session.path.read_text())
    assert data["schema"] == "smtplab-training/1"
    assert data["score"] == {"correct": 1, "total": 2, "percent": 50, "seconds": 52.0}
    assert [case["correct"] for case in data["cases"]] == [True, False]
    assert data["cases"][0]["fix_verified"] is True
    assert data["cases"][0]["choices"] == ["port-blocked-timeout"]
    assert list(tmp_path.iterdir()) == [session.path], "no temporary file left behind"


def test_case_timer() -> None:
    now = [100.0]
    timer = CaseTimer(clock=lambda: now[0])
    assert timer.elapsed() == 0.0
    timer.start()
    now[0] = 107.5
    assert timer.elapsed() == 7.5
