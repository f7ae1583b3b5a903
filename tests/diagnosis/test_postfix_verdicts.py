"""Verdicts that hold against real servers: Postfix's own words, on real sockets.

Each case stands up aiosmtpd servers that refuse as Postfix 3.7 does
(`postfixlike`) behind a `ServerTarget`, runs the engine as `smtplab diagnose
--server` would, and checks the catalog entry it names. The cases are the
classes of wrong verdict seen against real Postfix: the server's words losing to
the engine's own DNS, temporary forms of permanent policies, AUTH offered but
not used, one filtered port on a live host, a connection limit at the greeting,
private certificates, and remedies that cannot be proven from here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from lab.diagnosis.catalog import UNKNOWN
from lab.diagnosis.engine import run_diagnosis
from lab.diagnosis.events import Diagnosis, Probe, Status, Step
from lab.diagnosis.target import PortMapConnector, ServerTarget, nameserver_resolver
from tests.diagnosis import postfixlike as pf
from tests.diagnosis.conftest import DNS_TIMEOUT, LOCALHOST, World, settings

NXDOMAIN_RCPT = "bob@nosuch.example.org"  # the engine's DNS says NXDOMAIN
OTHER_DOMAIN_RCPT = "carol@nomx.example.org"  # exists, but is not the server's domain


@dataclass(frozen=True)
class Case:
    """A Postfix policy on the configured port, the mail program's settings, the verdict."""

    name: str
    entry: str
    policy: dict[str, Any]
    mail: dict[str, Any] = field(default_factory=dict)
    tls: bool = True  # the server offers STARTTLS with the lab CA's certificate
    failed: Probe | None = None


NO_LOGIN = {"auth": None}
PLAIN_25 = {"auth": None, "port": 25, "security": "none"}
CASES = [
    Case(
        "relay denied though the recipient domain does not resolve here",
        "relay-denied",
        {},
        {**NO_LOGIN, "to": [NXDOMAIN_RCPT]},
        failed=Probe.RCPT,
    ),
    Case(
        "relay denied, temporary form (defer_unauth_destination)",
        "relay-denied",
        {"relay_reply": pf.RELAY_DEFERRED},
        {**NO_LOGIN, "to": [OTHER_DOMAIN_RCPT]},
        failed=Probe.RCPT,
    ),
    Case(
        "submission refuses an unauthenticated client at RCPT (Access denied), domain unknown",
        "auth-required",
        {"rcpt_reply": pf.CLIENT_REJECTED},
        {**NO_LOGIN, "to": [NXDOMAIN_RCPT]},
        failed=Probe.RCPT,
    ),
    Case(
        "AUTH offered, MAIL refused with Authentication required",
        "auth-required",
        {"mail_reply": pf.AUTH_REQUIRED},
        NO_LOGIN,
        failed=Probe.MAIL,
    ),
    Case(
        "AUTH offered, MAIL refused with 550 5.7.1 Access denied",
        "auth-required",
        {"mail_reply": "550 5.7.1 Access denied"},
        NO_LOGIN,
        failed=Probe.MAIL,
    ),
    Case(
        "client rejected where no login is offered",
        "client-rejected",
        {"rcpt_reply": pf.CLIENT_REJECTED, "auth_mechanisms": ()},
        PLAIN_25,
        tls=False,
        failed=Probe.RCPT,
    ),
    Case(
        "greylisted by postgrey",
        "greylisting",
        {"rcpt_reply": pf.GREYLISTED},
        PLAIN_25,
        tls=False,
        failed=Probe.RCPT,
    ),
    Case(
        "message rate limit (anvil)",
        "rate-limited",
        {"mail_reply": "450 4.7.1 Error: too much mail from 127.0.0.1"},
        PLAIN_25,
        tls=False,
        failed=Probe.MAIL,
    ),
    Case(
        "sender domain not found",
        "sender-domain-rejected",
        {"sender_reply": pf.SENDER_DOMAIN},
        {"from": "alice@nosuch.example.org"},
        failed=Probe.MAIL,
    ),
    Case(
        "unknown user in the virtual mailbox table",
        "unknown-user",
        {},
        {"to": ["nobody@example.org"]},
        failed=Probe.RCPT,
    ),
    Case(
        "too large, announced by SIZE",
        "message-too-large",
        {"size_limit": 1000},
        {"size": 5000},
        failed=Probe.MAIL,
    ),
    Case(
        "too large, told only at the end of DATA",
        "message-too-large",
        {"size_limit": 1000, "announce_size": False},
        {"size": 5000},
        failed=Probe.DATA,
    ),
    Case(
        "connection limit worded as Exim does",
        "connection-limit",
        {
            "connection_limit": 0,
            "connection_reply": "421 Too many concurrent SMTP connections; please try again later.",
        },
        {},
        failed=Probe.BANNER,
    ),
    Case(
        "STARTTLS required before MAIL",
        "tls-required",
        {"tls_before_mail": True},
        {"security": "none", "auth": None},
        failed=Probe.MAIL,
    ),
    Case(
        "wrong password, login already a full address",
        "auth-bad-credentials",
        {},
        {"auth": {"user": "alice@example.org", "password": "wrong"}},
        failed=Probe.AUTH,
    ),
    Case(
        "forced mechanism the server does not offer",
        "auth-mechanism-mismatch",
        {},
        {"auth": {"user": "alice@example.org", "password": "s3cret-Pa55", "mechanism": "CRAM-MD5"}},
        failed=Probe.AUTH,
    ),
]


@pytest.fixture
async def postfix() -> AsyncIterator[pf.PostfixServers]:
    """Postfix-worded servers for one test, stopped afterwards."""
    servers = pf.PostfixServers()
    try:
        yield servers
    finally:
        await servers.close()


async def _diagnose(
    world: World, ports: dict[int, int], mail: dict[str, Any], *, unmapped: str = "closed"
) -> tuple[list[Step], Diagnosis]:
    return await world.diagnose(settings(**mail), ports, unmapped=unmapped)


def _step(steps: list[Step], probe: Probe) -> Step:
    return next(step for step in steps if step.probe is probe)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_postfix_reply_names_the_right_fault(
    world: World, postfix: pf.PostfixServers, case: Case
) -> None:
    policy = pf.PostfixPolicy(tls=world.pki.context() if case.tls else None, **case.policy)
    port = await postfix.start(policy)
    configured = int(case.mail.get("port", 587))
    steps, diagnosis = await _diagnose(world, {configured: port}, case.mail)
    assert diagnosis.entry == case.entry, (diagnosis.cause, diagnosis.alternatives)
    assert diagnosis.failed_probe is case.failed
    failed = _step(steps, case.failed) if case.failed else None
    assert failed is None or failed.status is Status.FAIL
    assert UNKNOWN not in diagnosis.cause + diagnosis.remedy.text


async def test_one_port_filtered_on_a_live_host(world: World) -> None:
    # 25 drops the SYN; 465, 587 and 2525 answer with a reset: the host is there.
    _steps, diagnosis = await _diagnose(
        world, {25: world.blackhole.port}, PLAIN_25, unmapped="closed"
    )
    assert diagnosis.entry == "port-filtered"
    assert "any mail port" not in diagnosis.cause
    assert "25" in diagnosis.cause
    assert "up" in diagnosis.cause


async def test_one_port_filtered_with_submission_open(
    world: World, postfix: pf.PostfixServers
) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context()))
    _, diagnosis = await _diagnose(world, {25: world.blackhole.port, 587: port}, PLAIN_25)
    assert diagnosis.entry == "port-blocked-timeout"


async def test_nothing_answers_anywhere_is_still_said(world: World) -> None:
    _, diagnosis = await _diagnose(world, {}, PLAIN_25, unmapped="blackhole")
    assert diagnosis.entry == "connect-timeout-everywhere"


async def test_connection_limit_at_the_greeting(world: World, postfix: pf.PostfixServers) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context(), connection_limit=1))
    await postfix.hold(port)  # the company the limit needs
    _steps, diagnosis = await _diagnose(world, {587: port}, {})
    assert diagnosis.entry == "connection-limit", (diagnosis.cause, diagnosis.alternatives)
    assert diagnosis.failed_probe is Probe.BANNER
    assert "too many connections" in diagnosis.cause


async def test_private_certificate_is_a_finding_and_the_walk_goes_on(
    world: World, postfix: pf.PostfixServers
) -> None:
    # Issued by a private CA the system does not trust; relaying is denied further on.
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context()))
    target = _target(world, {587: port}, ca_file=False)
    steps, diagnosis = await run_diagnosis(
        target, settings(auth=None, to=[NXDOMAIN_RCPT]), verify_fix=False
    )
    assert diagnosis.entry == "certificate-untrusted"
    assert diagnosis.failed_probe is Probe.STARTTLS
    tls_steps = [step for step in steps if step.probe is Probe.STARTTLS]
    assert tls_steps[0].status is Status.FAIL
    assert any("without verifying" in step.proves for step in tls_steps[1:])
    # The rest of the walk happened, and shows the next fault too.
    rcpt = _step(steps, Probe.RCPT)
    assert rcpt.status is Status.FAIL
    assert "Relay access denied" in rcpt.proves


async def test_self_signed_certificate_walk_goes_on_to_delivery(
    world: World, postfix: pf.PostfixServers
) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context("self.example.org")))
    steps, diagnosis = await _diagnose(world, {587: port}, {"server": "self.example.org"})
    assert diagnosis.entry == "certificate-untrusted"
    assert _step(steps, Probe.AUTH).status is Status.OK
    assert _step(steps, Probe.DATA).status is Status.OK


async def test_untrusted_certificate_on_implicit_tls_walk_goes_on(
    world: World, postfix: pf.PostfixServers
) -> None:
    tls = world.pki.context("self.example.org")
    port = await postfix.start(pf.PostfixPolicy(tls=tls, implicit_tls=True))
    mail = {"server": "self.example.org", "port": 465, "security": "tls"}
    steps, diagnosis = await _diagnose(world, {465: port}, mail)
    assert diagnosis.entry == "certificate-untrusted"
    assert diagnosis.failed_probe is Probe.STARTTLS
    statuses = [step.status for step in steps if step.probe is Probe.STARTTLS]
    assert statuses == [Status.FAIL, Status.WARN]
    assert _step(steps, Probe.AUTH).status is Status.OK
    assert _step(steps, Probe.DATA).status is Status.OK


async def test_ca_file_trusts_the_private_ca(world: World, postfix: pf.PostfixServers) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context()))
    _steps, diagnosis = await run_diagnosis(
        _target(world, {587: port}, ca_file=True), settings(), verify_fix=False
    )
    assert diagnosis.entry == "healthy"


async def test_insecure_does_not_verify(world: World, postfix: pf.PostfixServers) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context("self.example.org")))
    _, diagnosis = await run_diagnosis(
        _target(world, {587: port}, ca_file=False),
        settings(server="self.example.org", verify_tls=False),
        verify_fix=False,
    )
    assert diagnosis.entry == "healthy"


async def test_unknown_password_is_never_reported_proven(
    world: World, postfix: pf.PostfixServers
) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context()))
    mail = {"auth": {"user": "alice@example.org", "password": "wrong"}}
    _, diagnosis = await _diagnose(world, {587: port}, mail)
    assert diagnosis.entry == "auth-bad-credentials"
    assert diagnosis.fix_verified is not True
    assert diagnosis.fix_outcome
    assert "not proven" in diagnosis.fix_outcome
    assert "its password" in diagnosis.fix_outcome
    # The login is already a full address: do not tell the customer to use one.
    assert "full address" not in diagnosis.remedy.text


async def test_short_login_gets_the_full_address_advice(
    world: World, postfix: pf.PostfixServers
) -> None:
    port = await postfix.start(pf.PostfixPolicy(tls=world.pki.context()))
    _, diagnosis = await _diagnose(world, {587: port}, {"auth": {"user": "alice", "password": "x"}})
    assert diagnosis.entry == "auth-bad-credentials"
    assert "alice@example.org" in diagnosis.remedy.text
    assert diagnosis.fix_verified is not True


def _target(world: World, ports: dict[int, int], *, ca_file: bool) -> ServerTarget:
    mapping = {25: world.closed.port, 465: world.closed.port, 2525: world.closed.port, **ports}
    return ServerTarget(
        resolver=nameserver_resolver(LOCALHOST, world.dns_port, timeout=DNS_TIMEOUT),
        connector=PortMapConnector(mapping),
        ca_file=world.pki.ca_file if ca_file else None,
        helo="client.example.org",
        label="postfix-like server",
    )
