"""The planner decides every probe and explains every result, with no network at all.

Each case feeds made-up probe results, as the runners would return them, and
checks the requests the planner asked for, the steps it emitted and the facts
it collected (which the catalog then matches).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lab.diagnosis.events import Probe, Status, Step
from lab.diagnosis.planner import (
    Planner,
    classify_tls_error,
    human_size,
    is_ip_literal,
    port_list,
    suggest_addresses,
)
from lab.diagnosis.requests import (
    Ack,
    Authenticate,
    CheckReverseDns,
    Deferral,
    DeliveryResult,
    DnsResult,
    DomainLookup,
    EndSession,
    Failure,
    FollowMessage,
    Greeting,
    HelloResult,
    InspectResult,
    InspectTls,
    LookupDns,
    MailFrom,
    ModeResult,
    NameLookup,
    OpenSession,
    PeekAfterStarttls,
    PeekResult,
    PortProbe,
    PortsResult,
    RcptResult,
    RcptTo,
    ReadBanner,
    RecipientOutcome,
    Result,
    ReverseResult,
    SayHello,
    ScanPorts,
    SendData,
    SessionResult,
    StartTls,
    StartTlsResult,
    TryOtherTlsMode,
)
from lab.scenario.model import MailSettings
from lab.smtp.client import SmtpReply, TlsInfo

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


def walk(settings: MailSettings, results: list[Result], *, can_follow: bool = False) -> Walk:
    """Feed `results` one by one; the planner must ask exactly that many questions."""
    planner = Planner(settings, helo="pc.example.com", can_follow=can_follow, now=NOW)
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


# --- the walks --------------------------------------------------------------------------------


def test_healthy_submission_walks_every_stage_in_order() -> None:
    done = walk(mail(), [DNS_OK, PORTS_OK, *SESSION_OK])
    assert kinds(done) == [
        LookupDns,
        ScanPorts,
        OpenSession,
        ReadBanner,
        SayHello,
        StartTls,
        Authenticate,
        MailFrom,
        RcptTo,
        SendData,
        EndSession,
    ]
    assert done.requests[0] == LookupDns("mail.example.com", ("example.net",), "example.com")
    assert done.requests[1] == ScanPorts(ADDRESS, 587, (587, 25, 465, 2525), 3.0)
    assert done.requests[6] == Authenticate("PLAIN", "alice@example.com", "pw")
    assert all(status is Status.OK for _, status in done.statuses())
    assert [probe for probe, _ in done.statuses()] == [
        Probe.RESOLVE,
        Probe.PORTS,
        Probe.BANNER,
        Probe.EHLO,
        Probe.STARTTLS,
        Probe.AUTH,
        Probe.MAIL,
        Probe.RCPT,
        Probe.DATA,
    ]
    assert done.facts["outcome"] == "accepted"
    assert "problem" not in done.facts
    assert done.facts["ehlo"]["size"] == 1_000_000
    assert done.facts["tls"]["after"]["auth"] == ["PLAIN", "LOGIN"]
    assert done.facts["banner"]["ptr_matches"] is True


def test_a_followed_message_that_was_greylisted_is_delivered_with_a_warning() -> None:
    delivery = DeliveryResult(
        "delivered",
        (RecipientOutcome("bob@example.net", "delivered", "mx"),),
        (Deferral("bob@example.net", "4.7.1", "451 4.7.1 Greylisted, try again later", 1),),
        attempts=2,
        text="delivered to bob@example.net on mx",
    )
    done = walk(mail(), [DNS_OK, PORTS_OK, *SESSION_OK, delivery], can_follow=True)
    assert kinds(done)[-1] is FollowMessage
    assert done.step(Probe.DELIVERY).status is Status.WARN
    assert done.facts["delivery"]["deferral_statuses"] == ["4.7.1"]
    assert done.facts["outcome"] == "delivered"


def test_a_bounce_after_expiry_is_the_problem() -> None:
    delivery = DeliveryResult(
        "bounced",
        (RecipientOutcome("bob@example.net", "bounced", "relay", "5.4.7", "connect timed out"),),
        (Deferral("bob@example.net", "4.4.1", "connect to mx: timed out", 1),),
        attempts=2,
        expired=True,
    )
    done = walk(mail(), [DNS_OK, PORTS_OK, *SESSION_OK, delivery], can_follow=True)
    problem = done.facts["problem"]
    assert (problem["probe"], problem["kind"], problem["enhanced"]) == (
        "delivery",
        "expired",
        "5.4.7",
    )
    assert done.facts["outcome"] == "bounced"


@pytest.mark.parametrize(
    ("lookup", "kind"),
    [
        (NameLookup("mial.example.com", "nxdomain", error="NXDOMAIN"), "nxdomain"),
        (NameLookup("mial.example.com", "nodata", error="no A"), "nodata"),
        (NameLookup("mial.example.com", "temporary", error="SERVFAIL"), "temporary"),
    ],
)
def test_a_server_name_that_does_not_resolve_ends_the_walk(lookup: NameLookup, kind: str) -> None:
    done = walk(mail(server="mial.example.com"), [DnsResult(lookup)])
    assert kinds(done) == [LookupDns]
    assert done.facts["problem"]["kind"] == kind
    assert done.statuses()[0] == (Probe.RESOLVE, Status.FAIL)
    # the rest of the path is shown, skipped, in order (no delivery: nothing to follow)
    assert [probe for probe, _ in done.statuses()[1:]] == [
        Probe.PORTS,
        Probe.BANNER,
        Probe.EHLO,
        Probe.STARTTLS,
        Probe.AUTH,
        Probe.MAIL,
        Probe.RCPT,
        Probe.DATA,
    ]
    assert all(status is Status.SKIPPED for _, status in done.statuses()[1:])


def test_an_ip_literal_needs_no_lookup_but_the_domains_do() -> None:
    dns = DnsResult(NameLookup("192.0.2.10", "literal", ("192.0.2.10",)))
    done = walk(mail(server="192.0.2.10"), [dns, PORTS_OK, *SESSION_OK])
    assert done.facts["resolve"]["literal"] is True
    assert done.steps[0].status is Status.OK


def test_a_dropped_port_with_an_open_alternative_suggests_it() -> None:
    ports = PortsResult(
        ADDRESS,
        (
            PortProbe(25, "timeout", 3000.0, "timed out"),
            PortProbe(465, "open", 4.0, greeting=Greeting("tls", 220, "220 mail ESMTP")),
            PortProbe(587, "open", 3.0, greeting=Greeting("plain", 220, "220 mail", True)),
            PortProbe(2525, "refused", 1.0),
        ),
        3.0,
    )
    done = walk(mail(port=25, security="none", auth=None), [DNS_OK, ports])
    facts = done.facts["ports"]
    assert facts["state"] == "timeout"
    assert facts["others_open"] == [465, 587]
    assert facts["suggested"] == {
        "port": 587,
        "security": "starttls",
        "ms": 3.0,
        "label": "STARTTLS",
    }
    assert facts["implicit_port"] == 465
    assert done.step(Probe.PORTS).status is Status.FAIL
    assert "Port 587 answered in 3 ms" in done.step(Probe.PORTS).proves


def test_a_masked_or_plain_alternative_is_not_preferred() -> None:
    ports = PortsResult(
        ADDRESS,
        (
            PortProbe(25, "refused", 1.0),
            PortProbe(587, "open", 3.0, greeting=Greeting("plain", 220, "220 ******", False)),
            PortProbe(2525, "open", 3.0, greeting=Greeting("plain", 220, "220 mail", False)),
            PortProbe(465, "open", 3.0, greeting=Greeting("tls", 220, "220 mail")),
        ),
        3.0,
    )
    done = walk(mail(port=25, security="none", auth=None), [DNS_OK, ports])
    assert done.facts["ports"]["suggested"]["port"] == 465


def test_silence_on_the_port_then_a_tls_greeting_means_implicit_tls() -> None:
    silent = SessionResult(failure=Failure("timeout", "timed out after 3 s at banner"))
    tls_greets = ModeResult(True, banner=r("220 mail.example.com ESMTP"), tls=tls_info())
    ports = PortsResult(ADDRESS, (PortProbe(465, "open", 2.0),), 3.0)
    done = walk(mail(port=465), [DNS_OK, ports, SessionResult(), silent, ACK, tls_greets])
    assert kinds(done)[-2:] == [EndSession, TryOtherTlsMode]
    assert done.requests[-1] == TryOtherTlsMode(ADDRESS, 465, True, "pc.example.com")
    problem = done.facts["problem"]
    assert (problem["kind"], problem["fix_security"]) == ("wrong-tls-mode", "tls")


def test_silence_without_tls_either_is_a_tarpit() -> None:
    silent = SessionResult(failure=Failure("timeout", "timed out"))
    no_tls = ModeResult(True, failure=Failure("tls", "handshake timed out"))
    done = walk(mail(), [DNS_OK, PORTS_OK, SessionResult(), silent, ACK, no_tls])
    assert done.facts["banner"]["state"] == "timeout"
    assert done.facts["banner"]["mode_check"]["works"] is False
    assert done.facts["problem"]["kind"] == "timeout"


def test_tls_at_once_on_a_starttls_port_is_retried_in_plain_text() -> None:
    failed = SessionResult(failure=Failure("tls", "WRONG_VERSION_NUMBER: wrong version number"))
    plain = ModeResult(False, banner=r("220 mail ESMTP"), starttls=True)
    done = walk(mail(security="tls"), [DNS_OK, PORTS_OK, failed, plain])
    assert kinds(done)[-1] is TryOtherTlsMode
    assert done.facts["tls"]["error_class"] == "not-tls"
    assert done.facts["problem"]["fix_security"] == "starttls"
    assert done.step(Probe.STARTTLS).title == "TLS handshake (implicit TLS)"


def test_a_certificate_failure_is_inspected_without_verification() -> None:
    failed = StartTlsResult(
        failure=Failure(
            "tls",
            "CERTIFICATE_VERIFY_FAILED: Hostname mismatch, certificate is not valid for "
            "'mail.example.com'.",
        )
    )
    inspected = InspectResult(tls_info(names=("other.example.net",)))
    done = walk(mail(), [DNS_OK, PORTS_OK, SessionResult(), BANNER, EHLO, failed, inspected])
    assert done.requests[-1] == InspectTls(ADDRESS, 587, False, "pc.example.com")
    tls = done.facts["tls"]
    assert tls["verify_error"] == "hostname-mismatch"
    assert tls["cert"]["name"] == "other.example.net"
    assert tls["cert"]["matches_server"] is False


def test_an_expired_certificate_is_recognised() -> None:
    failed = StartTlsResult(
        failure=Failure("tls", "CERTIFICATE_VERIFY_FAILED: certificate has expired")
    )
    inspected = InspectResult(tls_info(days=-3))
    done = walk(mail(), [DNS_OK, PORTS_OK, SessionResult(), BANNER, EHLO, failed, inspected])
    assert done.facts["tls"]["verify_error"] == "expired"
    assert done.facts["tls"]["cert"]["expired"] is True


def test_auth_hidden_before_starttls_is_found_with_a_peek() -> None:
    peek = PeekResult({"AUTH": "PLAIN LOGIN"})
    done = walk(
        mail(security="none"),
        [DNS_OK, PORTS_OK, SessionResult(), BANNER, EHLO, ACK, peek],
    )
    assert kinds(done)[-2:] == [EndSession, PeekAfterStarttls]
    auth = done.facts["auth"]
    assert (auth["state"], auth["offered_after_tls"]) == ("not-offered", ["PLAIN", "LOGIN"])
    assert done.step(Probe.STARTTLS).status is Status.INFO  # offered, not used


def test_a_forced_mechanism_is_sent_even_when_not_offered() -> None:
    refused = SessionResult(r("504 5.5.4 Unrecognized authentication type"))
    settings = mail(auth={"user": "alice", "password": "pw", "mechanism": "CRAM-MD5"})
    done = walk(settings, [DNS_OK, PORTS_OK, SessionResult(), BANNER, EHLO, TLS_OK, refused, ACK])
    assert done.requests[6] == Authenticate("CRAM-MD5", "alice", "pw")
    assert done.facts["auth"]["mechanism_offered"] is False
    assert done.facts["problem"]["code"] == 504


def test_ehlo_refused_then_helo_is_an_old_server() -> None:
    hello = HelloResult(r("250 mail.example.com"), r("502 5.5.1 EHLO not implemented"), True)
    settings = mail(security="none", auth=None)
    done = walk(
        settings, [DNS_OK, PORTS_OK, SessionResult(), BANNER, hello, MAIL_OK, RCPT_OK, DATA_OK, ACK]
    )
    assert done.facts["ehlo"]["helo_fallback"] is True
    assert done.facts["ehlo"]["ehlo_code"] == 502
    assert done.step(Probe.EHLO).status is Status.WARN


def test_one_refused_recipient_of_two_is_the_problem_but_data_goes_on() -> None:
    rcpt = RcptResult(
        (
            ("bob@example.net", r("250 2.1.5 Ok")),
            ("bbo@example.net", r("550 5.1.1 <bbo@example.net>: User unknown")),
        )
    )
    settings = mail(to=["bob@example.net", "bbo@example.net"])
    done = walk(
        settings,
        [
            DNS_OK,
            PORTS_OK,
            SessionResult(),
            BANNER,
            EHLO,
            TLS_OK,
            AUTH_OK,
            MAIL_OK,
            rcpt,
            DATA_OK,
            ACK,
        ],
    )
    assert done.facts["rcpt"]["state"] == "partial"
    assert done.facts["rcpt"]["refused_addresses"] == ["bbo@example.net"]
    assert done.facts["problem"]["enhanced"] == "5.1.1"
    assert SendData in kinds(done)


def test_a_refusal_for_reverse_dns_is_followed_by_a_lookup_of_that_address() -> None:
    rcpt = RcptResult(
        (
            (
                "bob@example.net",
                r("450 4.7.25 Client host rejected: cannot find your hostname, [198.51.100.7]"),
            ),
        )
    )
    lookup = ReverseResult("198.51.100.7", "host.example.org", ("198.51.100.99",))
    done = walk(
        mail(),
        [
            DNS_OK,
            PORTS_OK,
            SessionResult(),
            BANNER,
            EHLO,
            TLS_OK,
            AUTH_OK,
            MAIL_OK,
            rcpt,
            ACK,
            lookup,
        ],
    )
    assert done.requests[-1] == CheckReverseDns("198.51.100.7")
    assert done.facts["problem"]["client_ptr_status"] == "mismatch"
    reverse = [step for step in done.steps if step.title.startswith("Reverse DNS")]
    assert reverse
    assert reverse[0].status is Status.FAIL


def test_a_lost_connection_during_data_is_not_polite() -> None:
    lost = SessionResult(failure=Failure("closed", "connection closed by the server"))
    done = walk(
        mail(),
        [
            DNS_OK,
            PORTS_OK,
            SessionResult(),
            BANNER,
            EHLO,
            TLS_OK,
            AUTH_OK,
            MAIL_OK,
            RCPT_OK,
            lost,
            ACK,
        ],
    )
    assert done.requests[-1] == EndSession(polite=False)
    assert done.facts["data"]["state"] == "closed"


def test_steps_carry_a_copy_of_the_facts() -> None:
    done = walk(mail(), [DNS_OK, PORTS_OK, *SESSION_OK])
    banner = done.step(Probe.BANNER)
    done.facts["banner"]["code"] = 999
    assert banner.evidence["code"] == 220


def test_a_result_of_the_wrong_kind_is_a_bug() -> None:
    planner = Planner(mail(), helo="pc", now=NOW)
    with pytest.raises(TypeError):
        planner.record(PORTS_OK)


# --- pure helpers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "family"),
    [
        (
            "CERTIFICATE_VERIFY_FAILED: Hostname mismatch, certificate is not valid for 'x'.",
            "hostname-mismatch",
        ),
        ("CERTIFICATE_VERIFY_FAILED: certificate has expired", "expired"),
        ("CERTIFICATE_VERIFY_FAILED: self-signed certificate", "self-signed"),
        ("CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate", "unknown-ca"),
        ("WRONG_VERSION_NUMBER: wrong version number", "not-tls"),
        ("TLSV1_ALERT_PROTOCOL_VERSION: tlsv1 alert protocol version", "protocol-version"),
        ("SSLV3_ALERT_HANDSHAKE_FAILURE: sslv3 alert handshake failure", "handshake-failure"),
        ("TLS handshake timed out after 3 s", "timeout"),
        ("connection closed during the TLS handshake (ConnectionResetError)", "closed"),
        ("something else", "other"),
    ],
)
def test_tls_reasons_are_grouped(reason: str, family: str) -> None:
    assert classify_tls_error(reason) == family


@pytest.mark.parametrize(
    ("wanted", "refused", "directory", "expected"),
    [
        # a typo in the local part
        (["bbo@example.net"], ["bbo@example.net"], ["bob@example.net"], ["bob@example.net"]),
        # a typo in the domain
        (["bob@example.nte"], ["bob@example.nte"], ["bob@example.net"], ["bob@example.net"]),
        # the accepted recipient stays
        (
            ["a@x.org", "bbo@example.net"],
            ["bbo@example.net"],
            ["bob@example.net"],
            ["a@x.org", "bob@example.net"],
        ),
        # nothing close: no suggestion
        (["zed@nowhere.example"], ["zed@nowhere.example"], ["bob@example.net"], None),
        # no directory: no suggestion
        (["bbo@example.net"], ["bbo@example.net"], [], None),
    ],
)
def test_mistyped_recipients_are_corrected_from_the_directory(
    wanted: list[str], refused: list[str], directory: list[str], expected: list[str] | None
) -> None:
    assert suggest_addresses(wanted, refused, directory) == expected


def test_small_helpers() -> None:
    assert port_list(25) == (25, 465, 587, 2525)
    assert port_list(2526, (587,)) == (2526, 587)
    assert human_size(1_000_000) == "1 MB"
    assert human_size(512) == "512 bytes"
    assert is_ip_literal("[192.0.2.1]")
    assert is_ip_literal("::1")
    assert not is_ip_literal("mail.example.com")
