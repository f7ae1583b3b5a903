"""Data and delivery: a connection lost in DATA, a followed message delivered late or bounced."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

from lab.diagnosis.catalog import match
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.probes.delivery import delivery_from
from lab.diagnosis.requests import (
    Deferral,
    DeliveryResult,
    EndSession,
    Failure,
    FollowMessage,
    RecipientOutcome,
    SessionResult,
)
from lab.runs import Fate, RecipientFate, RunReport
from lab.scenario.model import Outcome
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


def test_a_bounce_after_the_next_server_said_250_is_accept_then_bounce() -> None:
    bounced = DeliveryResult(
        "bounced",
        (RecipientOutcome("bbo@example.net", "bounced", "relay", "5.1.1", 'unknown user: "bbo"'),),
        attempts=1,
        handed_over=("bbo@example.net",),
    )
    done = walk(
        mail(to=["bbo@example.net"]), [DNS_OK, PORTS_OK, *SESSION_OK, bounced], can_follow=True
    )
    assert done.facts["delivery"]["accepted_then_bounced"] is True
    assert "accept-then-bounce" in done.step(Probe.DELIVERY).proves
    assert done.facts["problem"]["enhanced"] == "5.1.1"
    # refused by the next server itself: no handing over, an ordinary bounce
    refused = DeliveryResult("bounced", bounced.recipients, attempts=1)
    plain = walk(
        mail(to=["bbo@example.net"]), [DNS_OK, PORTS_OK, *SESSION_OK, refused], can_follow=True
    )
    assert plain.facts["delivery"]["accepted_then_bounced"] is False
    assert "accept-then-bounce" not in plain.step(Probe.DELIVERY).proves


def test_a_size_bounce_is_judged_against_the_next_servers_announced_limit() -> None:
    attempt = {
        "event": "delivery-attempt",
        "host": "mx.example.net",
        "address": "10.0.0.9",
        "port": 25,
        "transcript": [
            {"at": 0.1, "dir": "S", "text": "250-mx.example.net"},
            {"at": 0.1, "dir": "S", "text": "250-SIZE 400000"},
            {"at": 0.1, "dir": "S", "text": "250 8BITMIME"},
            {"at": 0.2, "dir": "S", "text": "552 5.3.4 Message size exceeds fixed limit"},
        ],
    }
    fate = RecipientFate(
        "bob@example.net",
        Fate.BOUNCED,
        "relay",
        "5.3.4",
        "552 5.3.4 Message size exceeds fixed limit",
        reply_code=552,
    )
    # delivery_from reads only the outcome, the recipients' fates and the text of a run
    report = cast("RunReport", SimpleNamespace(outcome=Outcome.BOUNCED, recipients=[fate], text=""))
    bounced = delivery_from(report, [attempt])
    assert bounced.remote_size_limit == 400_000
    done = walk(mail(size=2_000_000), [DNS_OK, PORTS_OK, *SESSION_OK, bounced], can_follow=True)
    # the provider's EHLO announced 1 MB: the remedy follows the recipient's 400 KB instead
    assert done.facts["ehlo"]["size_suggestion"] == 500_000
    assert done.facts["delivery"]["size_suggestion"] == 200_000
    assert match(done.facts)[0].id == "message-too-large"


def test_a_postfix_relay_names_the_next_servers_limit_in_its_own_bounce() -> None:
    # Postfix sees SIZE in the MX's EHLO and bounces without trying; its words carry the limit.
    text = "message size 2000177 exceeds size limit 1000000 of server mx.example.net[10.0.0.9]"
    fate = RecipientFate("bob@example.net", Fate.BOUNCED, "relay", "5.3.4", text)
    report = cast("RunReport", SimpleNamespace(outcome=Outcome.BOUNCED, recipients=[fate], text=""))
    assert delivery_from(report, []).remote_size_limit == 1_000_000
