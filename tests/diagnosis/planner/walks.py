"""Walks for the planner's tests: made-up probe results, as the runners would return them.

`walk` feeds results one by one and checks that the planner asks exactly that
many questions; the canned results make a healthy submission (587, STARTTLS,
AUTH) that each test changes where its case differs. No network at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from lab.diagnosis.events import Probe, Status, Step
from lab.diagnosis.planner import Planner
from lab.diagnosis.requests import (
    Ack,
    DnsResult,
    DomainLookup,
    Greeting,
    HelloResult,
    NameLookup,
    PortProbe,
    PortsResult,
    RcptResult,
    Result,
    SessionResult,
    StartTlsResult,
)
from lab.scenario.model import MailSettings
from lab.smtp.reply import SmtpReply
from lab.smtp.tls import TlsInfo

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ADDRESS = "192.0.2.10"


def r(*lines: str) -> SmtpReply:
    return SmtpReply.parse(list(lines))


def mail(**changes: Any) -> MailSettings:
    data: dict[str, Any] = {
        "server": "mail.example.com",
        "port": 587,
        "security": "starttls",
        "auth": {"user": "alice@example.com", "password": "pw"},
        "from": "alice@example.com",
        "to": ["bob@example.net"],
        "timeout": 3.0,
    }
    data.update(changes)
    return MailSettings.model_validate({k: v for k, v in data.items() if v is not None})


def tls_info(*, names: tuple[str, ...] = ("mail.example.com",), days: int = 90) -> TlsInfo:
    return TlsInfo(
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        verified=True,
        subject=f"CN={names[0]}",
        issuer="CN=Lab CA",
        not_after=NOW + timedelta(days=days),
        names=list(names),
    )


# --- canned results ---------------------------------------------------------------------------

DNS_OK = DnsResult(
    NameLookup("mail.example.com", "ok", (ADDRESS,), ms=3.0),
    ptr="mail.example.com",
    recipients=(DomainLookup("example.net", "ok", ("mx.example.net",)),),
    sender=DomainLookup("example.com", "ok", ("mail.example.com",)),
)
PORTS_OK = PortsResult(
    ADDRESS,
    (
        PortProbe(587, "open", 2.0),
        PortProbe(25, "open", 2.0, greeting=Greeting("plain", 220, "220 mail ESMTP", True)),
        PortProbe(465, "refused", 1.0),
        PortProbe(2525, "refused", 1.0),
    ),
    3.0,
)
BANNER = SessionResult(r("220 mail.example.com ESMTP"), duration=0.002)
EHLO = HelloResult(
    r("250-mail.example.com", "250-SIZE 1000000", "250 STARTTLS"),
    r("250-mail.example.com", "250-SIZE 1000000", "250 STARTTLS"),
    extensions={"SIZE": "1000000", "STARTTLS": ""},
)
EHLO_AFTER = HelloResult(
    r("250-mail.example.com", "250 AUTH PLAIN LOGIN"),
    r("250-mail.example.com", "250 AUTH PLAIN LOGIN"),
    extensions={"AUTH": "PLAIN LOGIN"},
)
TLS_OK = StartTlsResult(r("220 2.0.0 Ready"), tls_info(), EHLO_AFTER)
AUTH_OK = SessionResult(r("235 2.7.0 Authentication successful"))
MAIL_OK = SessionResult(r("250 2.1.0 Ok"))
RCPT_OK = RcptResult((("bob@example.net", r("250 2.1.5 Ok")),))
DATA_OK = SessionResult(r("250 2.0.0 Ok: queued as ABC"))
ACK = Ack()
SESSION_OK: list[Result] = [
    SessionResult(),
    BANNER,
    EHLO,
    TLS_OK,
    AUTH_OK,
    MAIL_OK,
    RCPT_OK,
    DATA_OK,
    ACK,
]


@dataclass
class Walk:
    planner: Planner
    requests: list[Any] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)

    @property
    def facts(self) -> dict[str, Any]:
        return self.planner.facts

    def statuses(self) -> list[tuple[Probe, Status]]:
        return [(step.probe, step.status) for step in self.steps]

    def step(self, probe: Probe) -> Step:
        return next(step for step in self.steps if step.probe is probe)


def walk(
    settings: MailSettings,
    results: list[Result],
    *,
    can_follow: bool = False,
    can_audit: bool = False,
) -> Walk:
    """Feed `results` one by one; the planner must ask exactly that many questions."""
    planner = Planner(
        settings, helo="pc.example.com", can_follow=can_follow, can_audit=can_audit, now=NOW
    )
    done = Walk(planner)
    for result in results:
        request = planner.next_request()
        assert request is not None, f"the planner stopped before {result!r}"
        done.requests.append(request)
        done.steps += planner.record(result)
    assert planner.next_request() is None, f"the planner still asks {planner.next_request()!r}"
    assert planner.done
    return done


def kinds(done: Walk) -> list[type]:
    return [type(request) for request in done.requests]
