"""Bounces: build an RFC 3464 report and read it back, without a network."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

from lab.nodes.mailserver.dsn import (
    LOCAL_DIAGNOSTIC,
    SUBJECT,
    FailedRecipient,
    build_dsn,
    parse_dsn,
    plain_reason,
)

ORIGINAL = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: Order 4711\r\n"
    b"Message-ID: <order-4711@pc1.office.lan>\r\n"
    b"\r\n"
    b"Please ship.\r\n"
)
ARRIVAL = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
UNKNOWN_USER = "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"


def _build(*recipients: FailedRecipient, original: bytes = ORIGINAL) -> bytes:
    return build_dsn(
        reporting_mta="mail.example.com",
        sender="alice@example.com",
        original=original,
        recipients=list(recipients),
        arrival_date=ARRIVAL,
        queue_id="QID1",
    )


CASES = [
    pytest.param(
        FailedRecipient(
            "bob@example.net",
            "5.1.1",
            UNKNOWN_USER,
            remote_mta="mx.example.net",
            stage="RCPT TO",
        ),
        "smtp",
        "mx.example.net",
        id="unknown-user",
    ),
    pytest.param(
        FailedRecipient(
            "carol@example.net",
            "5.4.7",
            "connect to mx.example.net[10.213.1.12]:25: Connection timed out",
            diagnostic_type=LOCAL_DIAGNOSTIC,
        ),
        LOCAL_DIAGNOSTIC,
        None,
        id="expired-unreachable",
    ),
    pytest.param(
        FailedRecipient(
            "dave@nullmx.test",
            "5.1.10",
            "Domain nullmx.test does not accept mail (null MX)",
            diagnostic_type=LOCAL_DIAGNOSTIC,
        ),
        LOCAL_DIAGNOSTIC,
        None,
        id="null-mx",
    ),
    pytest.param(
        FailedRecipient(
            "erin@example.net",
            "5.2.2",
            "552 5.2.2 <erin@example.net>: Mailbox full, and this reply text is long enough "
            "to be folded over several header lines by the generator",
            remote_mta="mx.example.net",
            stage="RCPT TO",
        ),
        "smtp",
        "mx.example.net",
        id="long-diagnostic-folded",
    ),
]


@pytest.mark.parametrize(("failed", "diagnostic_type", "remote_mta"), CASES)
def test_round_trip(failed: FailedRecipient, diagnostic_type: str, remote_mta: str | None) -> None:
    report = parse_dsn(_build(failed))
    assert report.to == "alice@example.com"
    assert report.subject == SUBJECT
    assert report.reporting_mta == "mail.example.com"
    assert report.queue_id == "QID1"
    assert report.original_message_id == "<order-4711@pc1.office.lan>"
    (recipient,) = report.recipients
    assert recipient.recipient == failed.address
    assert recipient.action == "failed"
    assert recipient.status == failed.status
    assert recipient.diagnostic_type == diagnostic_type
    # Unfolding gives back the exact text, spaces included.
    assert recipient.diagnostic_code == failed.diagnostic
    assert recipient.remote_mta == remote_mta
    assert recipient.last_attempt_date
    expected_code = int(failed.diagnostic[:3]) if diagnostic_type == "smtp" else None
    assert recipient.reply_code == expected_code
    assert failed.address in report.explanation
    assert plain_reason(failed.status) in report.explanation.replace("\n  ", " ")


def test_structure_is_rfc3464() -> None:
    raw = _build(
        FailedRecipient(
            "bob@example.net", "5.1.1", UNKNOWN_USER, remote_mta="mx.example.net", stage="RCPT TO"
        )
    )
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    message = message_from_bytes(raw, policy=policy.default)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.com>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Message-ID"].endswith("@mail.example.com>")
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    text = raw.decode()
    assert "Reporting-MTA: dns; mail.example.com" in text
    assert "Arrival-Date: Mon, 06 May 2024 07:08:09 +0000" in text
    assert "Final-Recipient: rfc822; bob@example.net" in text
    assert "Remote-MTA: dns; mx.example.net" in text
    assert "Status: 5.1.1" in text
    # The headers of the original come back, the body does not.
    assert "Subject: Order 4711" in text
    assert "Please ship." not in text
    explanation = parts[0].get_content()
    assert "RCPT TO" in explanation
    assert "mailbox does not exist" in explanation


def test_several_recipients_one_report() -> None:
    report = parse_dsn(
        _build(
            FailedRecipient("bob@example.net", "5.1.1", UNKNOWN_USER, remote_mta="mx.example.net"),
            FailedRecipient(
                "carol@example.org",
                "5.4.7",
                "connect to mx.example.org[10.0.0.7]:25: Connection refused",
                diagnostic_type=LOCAL_DIAGNOSTIC,
            ),
        )
    )
    assert [r.recipient for r in report.recipients] == ["bob@example.net", "carol@example.org"]
    assert report.recipient("CAROL@example.org").status == "5.4.7"
    with pytest.raises(KeyError):
        report.recipient("nobody@example.org")


def test_original_without_body_separator() -> None:
    report = parse_dsn(
        _build(
            FailedRecipient("bob@example.net", "5.1.1", UNKNOWN_USER),
            original=b"Message-ID: <only-headers@x>\r\nSubject: x\r\n",
        )
    )
    assert report.original_message_id == "<only-headers@x>"


def test_build_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="at least one"):
        _build()


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("5.1.1", "does not exist"),
        ("5.1.10", "null MX"),
        ("5.4.7", "time in the queue ran out"),
        ("5.7.99", "refused the message by policy"),
        ("5.9.9", "refused permanently"),
        ("x", "could not be delivered"),
    ],
)
def test_plain_reason(status: str, words: str) -> None:
    assert words in plain_reason(status)


@pytest.mark.parametrize(
    "raw",
    [
        b"From: a@b\r\nSubject: hello\r\n\r\nnot a report\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n"
        b"--x\r\nContent-Type: text/plain\r\n\r\nno status part\r\n--x--\r\n",
    ],
    ids=["plain-message", "report-without-status"],
)
def test_parse_rejects_non_dsn(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"delivery status|DSN"):
        parse_dsn(raw)


POSTFIX_BOUNCE = b"""\
From: MAILER-DAEMON@mx.other.example (Mail Delivery System)
To: alice@example.com
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="B1"

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry.

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.other.example
X-Postfix-Queue-ID: 4Vb3Q
Arrival-Date: Mon,  6 May 2024 07:08:09 +0000 (UTC)

Final-Recipient: rfc822; bob@example.net
Original-Recipient: rfc822;bob@example.net
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.net
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>: Recipient address rejected:
    User unknown

--B1
Content-Description: Undelivered Message
Content-Type: message/rfc822

Message-ID: <order-4711@pc1.office.lan>
Subject: Order 4711

Please ship.

--B1--
"""


def test_parse_foreign_dsn_with_full_original() -> None:
    report = parse_dsn(POSTFIX_BOUNCE)
    assert report.queue_id == "4Vb3Q"
    assert report.original_message_id == "<order-4711@pc1.office.lan>"
    (recipient,) = report.recipients
    assert recipient.status == "5.1.1"
    assert recipient.diagnostic_code == (
        "550 5.1.1 <bob@example.net>: Recipient address rejected:    User unknown"
    )
    assert recipient.last_attempt_date is None
