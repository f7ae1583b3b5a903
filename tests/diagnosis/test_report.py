"""Output shapes: JSON for machines, Markdown for tickets, the stepwise rich view, exit codes."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from lab.diagnosis import report
from lab.diagnosis.events import Diagnosis, Probe, Remedy, Status, Step, to_json
from lab.scenario.model import MailSettings
from lab.smtp.transcript import Direction, TranscriptLine

SETTINGS = MailSettings.model_validate(
    {
        "server": "mail.example.com",
        "port": 25,
        "auth": {"user": "alice@example.com", "password": "correct-horse"},
        "from": "alice@example.com",
        "to": ["bob@example.net"],
    }
)
STEPS = [
    Step(
        Probe.RESOLVE,
        Status.OK,
        "Resolve mail.example.com",
        "Looked up A.",
        proves="It exists.",
        evidence={"status": "ok"},
        duration=0.004,
    ),
    Step(
        Probe.PORTS,
        Status.FAIL,
        "Connect to mail.example.com:25",
        "Opened connections to 25, 465, 587, 2525.",
        proves="Port 25 timed out | 587 answered.",
        evidence={"state": "timeout"},
        transcript=(TranscriptLine(3.0, Direction.NOTE, "no answer from 10.0.0.1:25 within 3 s"),),
        duration=3.0,
        node="isp",
    ),
    Step(Probe.BANNER, Status.SKIPPED, "Read the greeting", "Nothing.", {}, "Not reached."),
    Step(
        Probe.FIX,
        Status.OK,
        "Re-send with the fix applied",
        "Sent again.",
        proves="It goes through.",
        evidence={"changes": {"auth": {"user": "alice@example.com", "password": "****"}}},
        transcript=(TranscriptLine(0.01, Direction.SERVER, "220 mail.example.com ESMTP"),),
        duration=0.05,
    ),
]
DIAGNOSIS = Diagnosis(
    entry="port-blocked-timeout",
    title="Outbound port blocked",
    cause="Your provider blocks outbound port 25.",
    explanation="The network drops port 25.",
    confirm="nc -vz mail.example.com 25",
    remedy=Remedy(
        "Use 587 with STARTTLS and a login.",
        {
            "port": 587,
            "security": "starttls",
            "auth": {"user": "alice@example.com", "password": "correct-horse"},
        },
    ),
    references=("RFC 6409",),
    failed_probe=Probe.PORTS,
    node="isp",
    fix_verified=True,
    fix_outcome="delivered: delivered to bob@example.net on mx",
    alternatives=("unclassified",),
    severity=Status.FAIL,
    outcome="failed",
    duration=3.1,
)


def test_json_report_has_the_verdict_steps_remedy_and_no_password() -> None:
    data = report.to_json_report(STEPS, DIAGNOSIS, target="lab x (local)", settings=SETTINGS)
    assert data["diagnosis"] == "port-blocked-timeout"
    assert data["fix_verified"] is True
    assert data["failed_probe"] == "ports"
    assert data["exit_code"] == 2
    assert data["remedy"]["settings"]["port"] == 587
    assert data["remedy"]["settings"]["auth"]["password"] == "****"
    assert data["settings"]["auth"]["password"] == "****"
    assert [step["probe"] for step in data["steps"]] == ["resolve", "ports", "banner", "fix"]
    assert data["steps"][1]["transcript"] == [
        {"at": 3.0, "dir": "*", "text": "no answer from 10.0.0.1:25 within 3 s"}
    ]
    text = json.dumps(data)  # plain data, serialisable as is
    assert "correct-horse" not in text


def test_to_json_masks_passwords_in_the_contract_objects_too() -> None:
    assert to_json(DIAGNOSIS)["remedy"]["settings"]["auth"]["password"] == "****"
    # the object itself keeps it: the engine re-sends with it
    assert DIAGNOSIS.remedy.settings["auth"]["password"] == "correct-horse"


def test_markdown_is_fit_for_a_ticket() -> None:
    text = report.to_markdown(STEPS, DIAGNOSIS, target="lab x (local)", settings=SETTINGS)
    assert text.startswith("## ❌ SMTP diagnosis: Outbound port blocked (`port-blocked-timeout`)")
    for heading in (
        "### Root cause",
        "### What to tell the customer",
        "### Remedy",
        "### How to confirm",
        "### Steps",
        "### References",
    ):
        assert heading in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == len(STEPS)
    assert "Port 25 timed out \\| 587 answered." in text  # a pipe cannot break the table
    assert "```text\n   3.000 ** no answer from 10.0.0.1:25 within 3 s\n```" in text
    assert "Settings: port 587, security starttls, login alice@example.com" in text
    assert "correct-horse" not in text
    assert "**Fix verified:** yes" in text


def test_the_terminal_view_shows_every_step_and_the_verdict() -> None:
    console = Console(width=100, record=True, color_system=None)
    console.print(report.human(STEPS, DIAGNOSIS))
    text = console.export_text()
    assert "✘ Connect to mail.example.com:25" in text
    assert "· Read the greeting" in text
    assert "Root cause" in text
    assert "Fix verified" in text
    assert "exit code 2" in text
    assert "correct-horse" not in text


@pytest.mark.parametrize(
    ("probe", "code"),
    [
        (None, 0),
        (Probe.RESOLVE, 20),
        (Probe.PORTS, 2),
        (Probe.BANNER, 21),
        (Probe.EHLO, 22),
        (Probe.MAIL, 23),
        (Probe.RCPT, 24),
        (Probe.DATA, 25),
        (Probe.AUTH, 28),
        (Probe.STARTTLS, 29),
        (Probe.DELIVERY, 30),
    ],
)
def test_exit_codes_follow_swaks(probe: Probe | None, code: int) -> None:
    from dataclasses import replace

    assert report.exit_code(replace(DIAGNOSIS, failed_probe=probe)) == code
