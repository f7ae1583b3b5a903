"""AUTH: a login hidden behind STARTTLS, a forced mechanism."""

from __future__ import annotations

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.requests import (
    Authenticate,
    EndSession,
    PeekAfterStarttls,
    PeekResult,
    SessionResult,
)
from tests.diagnosis.planner.walks import (
    ACK,
    BANNER,
    DNS_OK,
    EHLO,
    PORTS_OK,
    TLS_OK,
    kinds,
    mail,
    r,
    walk,
)


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
