"""Name resolution: a name that does not resolve, an IP literal, a refused client's reverse DNS."""

from __future__ import annotations

import pytest

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.requests import (
    CheckReverseDns,
    DnsResult,
    LookupDns,
    NameLookup,
    RcptResult,
    ReverseResult,
    SessionResult,
)
from tests.diagnosis.planner.walks import (
    ACK,
    AUTH_OK,
    BANNER,
    DNS_OK,
    EHLO,
    MAIL_OK,
    PORTS_OK,
    SESSION_OK,
    TLS_OK,
    kinds,
    mail,
    r,
    walk,
)


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
