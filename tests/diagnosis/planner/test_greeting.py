"""The greeting and EHLO: a silent port, a tarpit, an old server without ESMTP."""

from __future__ import annotations

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.requests import (
    EndSession,
    Failure,
    HelloResult,
    ModeResult,
    PortProbe,
    PortsResult,
    SessionResult,
    TryOtherTlsMode,
)
from tests.diagnosis.planner.walks import (
    ACK,
    ADDRESS,
    BANNER,
    DATA_OK,
    DNS_OK,
    MAIL_OK,
    PORTS_OK,
    RCPT_OK,
    kinds,
    mail,
    r,
    tls_info,
    walk,
)


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


def test_ehlo_refused_then_helo_is_an_old_server() -> None:
    hello = HelloResult(r("250 mail.example.com"), r("502 5.5.1 EHLO not implemented"), True)
    settings = mail(security="none", auth=None)
    done = walk(
        settings, [DNS_OK, PORTS_OK, SessionResult(), BANNER, hello, MAIL_OK, RCPT_OK, DATA_OK, ACK]
    )
    assert done.facts["ehlo"]["helo_fallback"] is True
    assert done.facts["ehlo"]["ehlo_code"] == 502
    assert done.step(Probe.EHLO).status is Status.WARN
