"""`smtplab explain` as a user runs it: TEXT, --file, stdin, --json, and its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SMTPLAB = [sys.executable, "-m", "lab.cli"]


def smtplab(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SMTPLAB, "explain", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_microsoft_365_reply_names_the_cause_with_everything_an_agent_needs() -> None:
    result = smtplab(
        "535 5.7.139 Authentication unsuccessful, "
        "SmtpClientAuthentication is disabled for the Tenant"
    )
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("1. SMTP AUTH (basic authentication) is turned off")
    for label in ("why:", "stage:     auth", "ask:", "remedy:", "Recognised:", "5.7.139"):
        assert label in result.stdout


def test_json_from_stdin_lists_candidates_best_first_with_the_scenario() -> None:
    result = smtplab("-", "--json", stdin="5.7.1 <bob@example.net>: Relay access denied\n")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    best = data["candidates"][0]
    assert set(best) >= {"id", "title", "score", "evidence", "scenario", "stage", "ask", "remedy"}
    assert best["id"] == "relay-denied"
    assert best["scenario"] == "relay-denied"
    scores = [candidate["score"] for candidate in data["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert data["recognised"]["enhanced"] == ["5.7.1"]


def test_a_bounce_file_is_explained(tmp_path: Path) -> None:
    bounce = tmp_path / "bounce.eml"
    bounce.write_text(
        "From: MAILER-DAEMON@mail.example.com\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mail.example.com\n\n"
        "Final-Recipient: rfc822; carol@example.net\nAction: failed\nStatus: 5.2.2\n"
        "Diagnostic-Code: smtp; 552 5.2.2 <carol@example.net>: Mailbox full\n--B--\n"
    )
    result = smtplab("--file", str(bounce), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["candidates"][0]["id"] == "mailbox-full"
    assert data["recognised"]["dsn"]["action"] == "failed"


def test_an_unknown_text_exits_3_names_nothing_and_shows_what_it_recognised() -> None:
    result = smtplab("the printer says 550 and nothing else")
    assert result.returncode == 3
    assert result.stdout.startswith("Unknown: this text matches no known cause.")
    assert "codes      550" in result.stdout
    data = json.loads(smtplab("it does not work", "--json").stdout)
    assert data["candidates"] == []


def test_bad_arguments_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for args, fragment in (
        ((), "give the error text, --file F, or -"),
        (("text", "--file", str(tmp_path / "x")), "not both"),
        (("--file", str(tmp_path / "missing.eml")), "cannot read"),
        (("   ",), "the text is empty"),
    ):
        result = smtplab(*args)
        assert result.returncode == 2, args
        assert result.stderr.count("\n") == 1, result.stderr
        assert fragment in result.stderr
        assert "Traceback" not in result.stderr
