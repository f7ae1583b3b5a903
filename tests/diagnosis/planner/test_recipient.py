"""The recipient's server asked directly after a 5.1.1 bounce: VRFY's 252 is told apart from
RCPT's real answer, with no network (the planner decides, `walks.walk` plays the results)."""

from __future__ import annotations

from lab.diagnosis.catalog import match
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.recipient import verdict
from lab.diagnosis.requests import (
    AskRecipientServer,
    DeliveryResult,
    Failure,
    RecipientAnswers,
    RecipientOutcome,
    Result,
)
from tests.diagnosis.planner.walks import (
    DNS_OK,
    PORTS_OK,
    SESSION_OK,
    Walk,
    kinds,
    mail,
    r,
    walk,
)

MX = "203.0.113.25"
BOUNCED = DeliveryResult(
    "bounced",
    (
        RecipientOutcome(
            "finance@example.net",
            "bounced",
            "relay",
            status="5.1.1",
            diagnostic="550 5.1.1 <finance@example.net>: Recipient address rejected",
            reply_code=550,
            remote_mta="dns; mx.example.net",
            reporting_mta="dns; mail.example.com",
        ),
    ),
    attempts=1,
    remote_address=MX,
    text="bounced",
)
HIDING = RecipientAnswers(
    "dns (203.0.113.53)",
    vrfy=r("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery"),
    rcpt=r("550 5.1.1 <finance@example.net>: Recipient address rejected: User unknown"),
)


def _walk(*results: Result, can_audit: bool = True) -> Walk:
    return walk(
        mail(to=["finance@example.net"]),
        [DNS_OK, PORTS_OK, *SESSION_OK, BOUNCED, *results],
        can_follow=True,
        can_audit=can_audit,
    )


def test_a_252_for_a_refused_mailbox_is_flagged_as_misleading() -> None:
    done = _walk(HIDING)
    assert done.requests[-1] == AskRecipientServer(
        MX, 25, "recipient-check.invalid", "finance@example.net"
    )
    step = done.step(Probe.RECIPIENT)
    assert step.status is Status.WARN
    assert "proves nothing" in step.proves
    assert "Check an address with RCPT TO" in step.proves
    facts = done.facts["recipient"]
    assert facts["vrfy_misleading"] is True
    assert facts["vrfy"]["code"] == 252
    assert facts["rcpt_accepts"] is False
    # The bounce stays the problem and the verdict: the step only explains.
    assert match(done.facts)[0].id == "unknown-user"


def test_vrfy_switched_off_says_nothing_about_the_mailbox() -> None:
    off = RecipientAnswers(
        "dns (203.0.113.53)",
        vrfy=r("502 5.5.1 VRFY command is disabled"),
        rcpt=r("550 5.1.1 <finance@example.net>: Recipient address rejected: User unknown"),
    )
    step = _walk(off).step(Probe.RECIPIENT)
    assert step.status is Status.INFO
    assert "switched off" in step.proves


def test_an_unreachable_server_leaves_the_bounce_as_it_is() -> None:
    failed = RecipientAnswers("dns (203.0.113.53)", failure=Failure("refused", "refused"))
    step = _walk(failed).step(Probe.RECIPIENT)
    assert step.status is Status.INFO
    assert "could not be asked" in step.proves


def test_not_asked_without_an_outside_host_or_for_other_bounces() -> None:
    assert AskRecipientServer not in kinds(_walk(can_audit=False))
    full = DeliveryResult(
        "bounced",
        (RecipientOutcome("finance@example.net", "bounced", "relay", status="5.2.2"),),
        remote_address=MX,
    )
    done = walk(
        mail(to=["finance@example.net"]),
        [DNS_OK, PORTS_OK, *SESSION_OK, full],
        can_follow=True,
        can_audit=True,
    )
    assert AskRecipientServer not in kinds(done)


def test_verdict_reads_the_codes() -> None:
    refused = r("550 5.1.1 unknown")
    assert verdict(r("250 2.1.5 bob@example.net"), r("250 2.1.5 Ok")) == ("exists", True)
    assert verdict(r("550 5.1.1 unknown"), refused) == ("unknown", False)
    assert verdict(r("252 2.0.0 bob@example.net"), None) == ("no answer", None)
    assert verdict(None, None) == ("not asked", None)
