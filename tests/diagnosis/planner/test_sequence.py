"""The walk in order: every stage asked once, in the expert's order; a wrong answer is a bug."""

from __future__ import annotations

import pytest

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner import Planner
from lab.diagnosis.requests import (
    Authenticate,
    EndSession,
    LookupDns,
    MailFrom,
    OpenSession,
    RcptTo,
    ReadBanner,
    SayHello,
    ScanPorts,
    SendData,
    StartTls,
)
from tests.diagnosis.planner.walks import (
    ADDRESS,
    DNS_OK,
    NOW,
    PORTS_OK,
    SESSION_OK,
    kinds,
    mail,
    walk,
)


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


def test_a_result_of_the_wrong_kind_is_a_bug() -> None:
    planner = Planner(mail(), helo="pc", now=NOW)
    with pytest.raises(TypeError):
        planner.record(PORTS_OK)
