"""Data and delivery: a connection lost in DATA, a followed message delivered late or bounced."""

from __future__ import annotations

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.requests import (
    Deferral,
    DeliveryResult,
    EndSession,
    Failure,
    FollowMessage,
    RecipientOutcome,
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
    RCPT_OK,
    SESSION_OK,
    TLS_OK,
    kinds,
    mail,
    walk,
)


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
