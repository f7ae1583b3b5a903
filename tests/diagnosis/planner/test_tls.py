"""TLS: the wrong TLS mode, certificate failures looked at again, OpenSSL reasons grouped."""

from __future__ import annotations

import pytest

from lab.diagnosis.events import Probe
from lab.diagnosis.planner.tls_facts import classify_tls_error
from lab.diagnosis.requests import (
    Failure,
    InspectResult,
    InspectTls,
    ModeResult,
    SessionResult,
    StartTlsResult,
    TryOtherTlsMode,
)
from tests.diagnosis.planner.walks import (
    ADDRESS,
    BANNER,
    DNS_OK,
    EHLO,
    PORTS_OK,
    kinds,
    mail,
    r,
    tls_info,
    walk,
)


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
