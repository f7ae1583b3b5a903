"""Every catalog scenario on the local backend: what the client saw, what each hop did,
and what landed in which mailbox (bounces with their DSN status included)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import message_from_bytes
from pathlib import Path

import pytest

from lab.catalog import scenario_files
from lab.nodes.mailserver.dsn import parse_dsn
from lab.runs import Fate, RunReport, run_once
from lab.runtime.base import Lab, running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario, parse_scenario
from lab.scenario.model import Outcome, Stage
from lab.verify import verify

SCENARIOS = Path(__file__).parents[1] / "scenarios"


@pytest.fixture
async def lab(request: pytest.FixtureRequest) -> AsyncIterator[Lab]:
    scenario = load_scenario(SCENARIOS / f"{request.param}.yaml")
    async with running_lab(scenario, LocalBackend()) as running:
        yield running


def scenario_lab(name: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("lab", [name], indirect=True)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
async def test_every_scenario_meets_its_expectation(path: Path) -> None:
    scenario = load_scenario(path)
    async with running_lab(scenario, LocalBackend()) as running:
        result = await verify(running)
    assert result.mismatches == []
    if scenario.expect.fix is not None:
        assert result.fix_report is not None
        assert result.fix_report.outcome is Outcome.DELIVERED
    if scenario.expect.repair:
        assert result.repair_report is not None
        assert result.repair_report.outcome is Outcome.DELIVERED


async def test_a_repair_that_does_not_repair_is_a_mismatch() -> None:
    text = (SCENARIOS / "mailbox-full.yaml").read_text()
    assert "{state: active}" in text
    scenario = parse_scenario(text.replace("{state: active}", "{state: over-quota}"), "x.yaml", "x")
    async with running_lab(scenario, LocalBackend()) as running:
        result = await verify(running)
    assert result.repair_report is not None
    assert result.repair_report.outcome is Outcome.BOUNCED
    assert [m for m in result.mismatches if m.startswith("repair:")] == [
        "repair: expected the repaired servers to deliver, got bounced at delivery "
        f"({result.repair_report.text})"
    ]


def only_line(report: RunReport, prefix: str) -> str:
    lines = [line.text for line in report.send.transcript.lines if line.text.startswith(prefix)]
    assert len(lines) == 1, lines
    return lines[0]


@scenario_lab("happy-path")
async def test_happy_path_lands_in_bobs_mailbox_via_the_relay(lab: Lab) -> None:
    report = await run_once(lab)
    assert report.outcome is Outcome.DELIVERED
    assert [(f.address, f.fate, f.node) for f in report.recipients] == [
        ("bob@example.net", Fate.DELIVERED, "mx")
    ]
    (stored,) = lab.mailbox("mx", "bob@example.net")
    message = message_from_bytes(stored)
    assert message["Message-ID"] == report.send.message_id
    received = message.get_all("Received")
    assert received is not None
    # two hops: the relay took it from the laptop, the MX from the relay
    assert any("by mx.example.net" in header for header in received)
    assert any("by mail.example.com" in header for header in received)
    # submission went through STARTTLS and AUTH, with the secret masked
    text = report.send.transcript.render()
    assert "STARTTLS" in text
    assert "AUTH PLAIN ****" in text
    assert "correct-horse" not in text


async def test_plus_addressing_lands_in_the_users_mailbox_with_a_delimiter() -> None:
    # The scenario's knob the other way round: the supplier's MX turns subaddressing on.
    scenario = load_scenario(SCENARIOS / "plus-addressing.yaml")
    mx = scenario.nodes["mx"].model_copy(update={"recipient_delimiter": "+"})
    subaddressing = scenario.model_copy(update={"nodes": {**scenario.nodes, "mx": mx}})
    async with running_lab(subaddressing, LocalBackend()) as running:
        report = await run_once(running)
        assert report.outcome is Outcome.DELIVERED, report.text
        assert [(f.address, f.fate, f.node) for f in report.recipients] == [
            ("bob+orders@example.net", Fate.DELIVERED, "mx")
        ]
        (stored,) = running.mailbox("mx", "bob@example.net")
        assert message_from_bytes(stored)["Message-ID"] == report.send.message_id
        assert running.mailbox("mx", "bob+orders@example.net") == []
        rcpt = [e for e in running.events("mx") if e.get("verb") == "rcpt"]
        assert [(e["address"], e["code"]) for e in rcpt] == [("bob+orders@example.net", 250)]


@scenario_lab("catch-all-bounce")
async def test_catch_all_takes_the_typo_at_rcpt_and_bounces_it_afterwards(lab: Lab) -> None:
    report = await run_once(lab)
    assert report.outcome is Outcome.BOUNCED
    # the gateway said 250 to the relay's RCPT ...
    rcpt = [e for e in lab.events("mx") if e.get("verb") == "rcpt"]
    assert [(e["address"], e["code"]) for e in rcpt] == [("bbo@example.net", 250)]
    assert any(e.get("event") == "delivered" for e in lab.events("relay"))
    # ... and its own DSN, not the relay's, came back to alice
    (bounce,) = lab.mailbox("relay", "alice@example.com")
    dsn = parse_dsn(bounce)
    assert dsn.reporting_mta == "mx.example.net"
    (failed,) = dsn.recipients
    assert (failed.recipient, failed.status) == ("bbo@example.net", "5.1.1")


@scenario_lab("blocked-port-25")
async def test_blocked_port_times_out_at_connect(lab: Lab) -> None:
    report = await run_once(lab)
    assert (report.outcome, report.stage, report.code) == (
        Outcome.CONNECT_TIMEOUT,
        Stage.CONNECT,
        None,
    )
    assert report.text == "connect timeout to mail.example.com:25 after 3.0 s"
    assert report.send.timings[Stage.CONNECT] >= 2.9
    assert not any(line.direction == "S" for line in report.send.transcript.lines)
    assert lab.mailbox("mx", "bob@example.net") == []


@scenario_lab("bad-recipient")
async def test_bad_recipient_bounces_to_the_sender_with_5_1_1(lab: Lab) -> None:
    report = await run_once(lab)
    assert report.send.outcome is Outcome.DELIVERED  # the relay accepted it
    assert (report.outcome, report.code, report.enhanced) == (Outcome.BOUNCED, 550, "5.1.1")
    (bounce,) = lab.mailbox("relay", "alice@example.com")
    dsn = parse_dsn(bounce)
    assert dsn.original_message_id == report.send.message_id
    (recipient,) = dsn.recipients
    assert (recipient.recipient, recipient.action, recipient.status) == (
        "bbo@example.net",
        "failed",
        "5.1.1",
    )
    assert recipient.diagnostic_code is not None
    assert "550 5.1.1 <bbo@example.net>: Recipient address rejected: User unknown" in (
        recipient.diagnostic_code
    )
    assert lab.mailbox("mx", "bob@example.net") == []


@scenario_lab("unknown-domain")
async def test_unknown_domain_bounces_without_a_remote_reply(lab: Lab) -> None:
    report = await run_once(lab)
    assert (report.outcome, report.code, report.enhanced) == (Outcome.BOUNCED, None, "5.1.2")
    queries = [e for e in lab.events("dns") if e["event"] == "query"]
    assert any(q["qname"].startswith("example.nte") and q["rcode"] == "NXDOMAIN" for q in queries)


@scenario_lab("greylisted")
async def test_greylisting_defers_once_then_the_retry_delivers(lab: Lab) -> None:
    report = await run_once(lab)
    assert report.outcome is Outcome.DELIVERED
    # the MX stores before it answers 250; the relay logs "delivered" just after that reply
    for _ in range(100):
        relay_events = [e["event"] for e in lab.events("relay")]
        if "delivered" in relay_events:
            break
        await asyncio.sleep(0.01)
    assert relay_events.count("deferred") == 1
    deferred = next(e for e in lab.events("relay") if e["event"] == "deferred")
    assert deferred["status"] == "4.7.1"
    assert "451 4.7.1" in deferred["reason"]
    assert relay_events.index("deferred") < relay_events.index("delivered")
    assert len(lab.mailbox("mx", "bob@example.net")) == 1


@scenario_lab("destination-down")
async def test_destination_down_is_retried_then_expires_with_5_4_7(lab: Lab) -> None:
    report = await run_once(lab)
    assert (report.outcome, report.enhanced, report.code) == (Outcome.BOUNCED, "5.4.7", None)
    attempts = [e for e in lab.events("relay") if e["event"] == "delivery-attempt"]
    assert len(attempts) >= 2, "the relay must retry before giving up"
    (bounce,) = lab.mailbox("relay", "alice@example.com")
    (recipient,) = parse_dsn(bounce).recipients
    assert recipient.status == "5.4.7"
    assert recipient.diagnostic_code is not None
    assert "timed out" in recipient.diagnostic_code


@scenario_lab("relay-denied")
async def test_relay_denied_from_home_but_allowed_with_auth(lab: Lab) -> None:
    report = await run_once(lab)
    assert only_line(report, "554 ") == "554 5.7.1 <bob@example.net>: Relay access denied"
    assert lab.mailbox("mx", "bob@example.net") == []
    decisions = [
        e for e in lab.events("relay") if e["event"] == "command" and e.get("verb") == "rcpt"
    ]
    assert [(d["address"], d["code"]) for d in decisions] == [("bob@example.net", 554)]


@scenario_lab("auth-bad-password")
async def test_bad_login_is_rejected_and_the_password_never_shown(lab: Lab) -> None:
    report = await run_once(lab)
    assert only_line(report, "535 ") == "535 5.7.8 Authentication credentials invalid"
    assert "correct-horse" not in report.send.transcript.render()
    auth_events = [e for e in lab.events("relay") if e["event"] == "auth"]
    assert auth_events
    assert not auth_events[-1]["success"]
    assert all("correct-horse" not in str(event) for event in lab.events("relay"))
