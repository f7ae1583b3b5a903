"""Node events summarised for the logs tab, and mailboxes read through the Lab interface."""

from __future__ import annotations

import re

import pytest

from lab.catalog import load
from lab.runs import run_once
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend
from tui.labdata import collect_logs, collect_mail, summarize


@pytest.mark.parametrize(
    ("event", "words", "level"),
    [
        # a DNS answer
        (
            {"event": "query", "qname": "mx.example.net.", "qtype": "A", "rcode": "NOERROR",
             "answers": ["mx.example.net. 300 IN A 10.0.0.5"]},
            "A mx.example.net. → NOERROR: A 10.0.0.5",
            "ok",
        ),
        # NXDOMAIN is a failure
        (
            {"event": "query", "qname": "nope.", "qtype": "MX", "rcode": "NXDOMAIN", "answers": []},
            "NXDOMAIN",
            "fail",
        ),
        # an MX refusing a recipient
        (
            {"event": "command", "verb": "rcpt", "code": 550, "reply": "550 5.1.1 unknown",
             "decision": "user-unknown"},
            "RCPT → 550 5.1.1 unknown [user-unknown]",
            "fail",
        ),
        # the relay queue retrying
        (
            {"event": "deferred", "recipient": "bob@example.net", "status": "4.4.1",
             "reason": "connect timeout", "next_attempt_in": 0.25},
            "deferred bob@example.net 4.4.1: connect timeout, retry in 0.25 s",
            "warn",
        ),
        (
            {"event": "bounced", "recipient": "bob@example.net", "status": "5.1.1",
             "diagnostic": "550 5.1.1 no such user"},
            "bounced bob@example.net 5.1.1",
            "fail",
        ),
        # unknown events still say something
        ({"event": "odd", "ts": 1, "node": "x", "a": 1}, "a=1", "info"),
    ],
)  # fmt: skip
def test_summaries(event: dict[str, object], words: str, level: str) -> None:
    summary, got = summarize(event)
    assert words in summary
    assert got == level


async def test_bounce_shows_dsn_fields_and_logs_show_decisions() -> None:
    scenario = load("bad-recipient")
    async with running_lab(scenario, LocalBackend()) as lab:
        report = await run_once(lab)
        items = collect_mail(lab)
        logs = collect_logs(lab)
    assert str(report.outcome) == "bounced"
    bounces = [item for item in items if item.is_bounce]
    assert bounces, items
    group = bounces[0].bounce[0]  # type: ignore[index]
    assert group.status == "5.1.1"
    assert group.action == "failed"
    assert "550" in (group.diagnostic or "")
    assert bounces[0].original_message_id == report.send.message_id
    events = {entry.event for entry in logs}
    assert {"query", "queued", "bounced"} <= events
    # clock times a person reads, in order
    clocks = [entry.clock for entry in logs]
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", clock) for clock in clocks), clocks
    assert clocks == sorted(clocks) or clocks[0] > clocks[-1]  # (unless past midnight)
