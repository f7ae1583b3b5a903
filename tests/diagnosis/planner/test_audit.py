"""The relay audit: asked only when the session relayed without a login, never DATA."""

from __future__ import annotations

from lab.diagnosis.catalog import match
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.requests import (
    AuditRelay,
    AuditResult,
    DeliveryResult,
    DnsResult,
    DomainLookup,
    Failure,
    NameLookup,
    RecipientOutcome,
    Result,
    SessionResult,
)
from lab.scenario.model import MailSettings
from tests.diagnosis.planner.walks import (
    ACK,
    ADDRESS,
    BANNER,
    DATA_OK,
    DNS_OK,
    EHLO,
    MAIL_OK,
    PORTS_OK,
    RCPT_OK,
    SESSION_OK,
    TLS_OK,
    kinds,
    mail,
    r,
    walk,
)

DELIVERED = DeliveryResult(
    "delivered",
    (RecipientOutcome("bob@example.net", "delivered", "mx"),),
    attempts=1,
    text="delivered to bob@example.net on mx",
)
# Port 25, STARTTLS, no login: the office's mail program on a trusting (or open) relay.
NO_LOGIN: list[Result] = [SessionResult(), BANNER, EHLO, TLS_OK, MAIL_OK, RCPT_OK, DATA_OK, ACK]
RELAYED = AuditResult(
    "dns (203.0.113.53)",
    mail=r("250 2.1.0 Sender OK"),
    rcpt=r("250 2.1.5 Recipient <bob@example.net> OK"),
)
DENIED = AuditResult(
    "dns (203.0.113.53)",
    mail=r("250 2.1.0 Sender OK"),
    rcpt=r("554 5.7.1 <bob@example.net>: Relay access denied"),
)


def _unauthenticated() -> MailSettings:
    return mail(port=25, auth=None)


def test_a_relay_that_takes_a_stranger_is_an_open_relay_and_mail_still_works() -> None:
    done = walk(
        _unauthenticated(),
        [DNS_OK, PORTS_OK, *NO_LOGIN, DELIVERED, RELAYED],
        can_follow=True,
        can_audit=True,
    )
    request = done.requests[-1]
    assert request == AuditRelay(
        ADDRESS, 25, "relay-audit.invalid", "relay-audit@example.net", "bob@example.net"
    )
    step = done.step(Probe.RELAY)
    assert step.status is Status.WARN
    assert "open relay" in step.proves
    assert done.facts["relay"]["open_relay"] is True
    assert "problem" not in done.facts
    assert done.facts["outcome"] == "delivered"
    assert [entry.id for entry in match(done.facts)][:2] == ["open-relay", "healthy"]


def test_a_relay_that_refuses_strangers_trusts_the_customer() -> None:
    done = walk(
        _unauthenticated(),
        [DNS_OK, PORTS_OK, *NO_LOGIN, DELIVERED, DENIED],
        can_follow=True,
        can_audit=True,
    )
    step = done.step(Probe.RELAY)
    assert step.status is Status.OK
    assert "trusts the customer's network" in step.proves
    assert done.facts["relay"]["open_relay"] is False
    assert match(done.facts)[0].id == "healthy"


def test_an_audit_that_cannot_reach_rcpt_says_nothing_is_known() -> None:
    failed = AuditResult("dns (203.0.113.53)", failure=Failure("refused", "connection refused"))
    done = walk(
        _unauthenticated(),
        [DNS_OK, PORTS_OK, *NO_LOGIN, DELIVERED, failed],
        can_follow=True,
        can_audit=True,
    )
    assert done.step(Probe.RELAY).status is Status.INFO
    assert done.facts["relay"]["open_relay"] is None
    assert match(done.facts)[0].id == "healthy"


def test_no_audit_after_a_login_or_without_an_outside_host() -> None:
    with_login = walk(
        mail(), [DNS_OK, PORTS_OK, *SESSION_OK, DELIVERED], can_follow=True, can_audit=True
    )
    assert AuditRelay not in kinds(with_login)
    no_outsider = walk(
        _unauthenticated(), [DNS_OK, PORTS_OK, *NO_LOGIN, DELIVERED], can_follow=True
    )
    assert AuditRelay not in kinds(no_outsider)
    assert all(step.probe is not Probe.RELAY for step in no_outsider.steps)


def test_no_audit_when_the_server_is_the_recipients_own_mx() -> None:
    own = DnsResult(
        NameLookup("mx.example.net", "ok", (ADDRESS,), ms=3.0),
        recipients=(DomainLookup("example.net", "ok", ("mx.example.net",)),),
        sender=DomainLookup("example.com", "ok", ("mail.example.com",)),
    )
    done = walk(
        mail(server="mx.example.net", port=25, auth=None),
        [own, PORTS_OK, *NO_LOGIN, DELIVERED],
        can_follow=True,
        can_audit=True,
    )
    assert AuditRelay not in kinds(done)
