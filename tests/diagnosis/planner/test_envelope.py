"""The envelope: a refused recipient among accepted ones, and the addresses to suggest."""

from __future__ import annotations

import pytest

from lab.diagnosis.planner.envelope import suggest_addresses
from lab.diagnosis.requests import (
    RcptResult,
    SendData,
    SessionResult,
)
from tests.diagnosis.planner.walks import (
    ACK,
    AUTH_OK,
    BANNER,
    DATA_OK,
    DNS_OK,
    EHLO,
    MAIL_OK,
    PORTS_OK,
    TLS_OK,
    kinds,
    mail,
    r,
    walk,
)


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
