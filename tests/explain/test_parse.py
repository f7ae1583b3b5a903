"""Reading pasted texts: replies and continuations, codes, DSN fields (a whole MIME
message too), log lines, client error numbers, exceptions, stages and sources."""

from __future__ import annotations

import base64

from lab.explain.dsn import dsn_fields, message_text
from lab.explain.parse import flatten, recognise, replies

GMAIL_WRAPPED = (
    "550-5.7.26 Unauthenticated email from example.com is not accepted due to domain's\n"
    "550-5.7.26 DMARC policy. Please contact the administrator of example.com domain\n"
    "550 5.7.26 if this was a legitimate mail. 3si123 - gsmtp"
)


def test_a_wrapped_reply_is_one_reply_and_its_prefixes_leave_the_words() -> None:
    found = replies(GMAIL_WRAPPED)
    assert len(found) == 1
    assert found[0].code == 550
    assert found[0].enhanced == "5.7.26"
    assert "domain's DMARC policy" in found[0].text
    assert "550-" not in flatten(GMAIL_WRAPPED)
    assert "not accepted due to domain's DMARC policy" in flatten(GMAIL_WRAPPED)


def test_codes_come_from_replies_not_from_ports_years_or_addresses() -> None:
    text = "2023-09-12 connect to 10.1.1.9:587 (port 465) failed: 535 5.7.8 bad; delay=552"
    found = recognise(text)
    assert found.codes == [535]
    assert found.enhanced == ["5.7.8"]
    assert found.ports == [587, 465]


def test_a_python_tuple_and_escaped_newlines_are_read() -> None:
    text = "SMTPAuthenticationError: (534, b'5.7.9 Application-specific password required.\\n5.7.9 https://x')"
    found = recognise(text)
    assert 534 in found.codes
    assert "5.7.9" in found.enhanced
    assert "SMTPAuthenticationError" in found.errors
    assert found.stage == "auth"
    assert "python-smtplib" in found.sources


def test_a_postfix_log_line_gives_the_stage_status_and_source() -> None:
    line = (
        "postfix/smtp[1322]: A4978C12E6: to=<a@gmail.com>, relay=gmail-smtp-in.l.google.com"
        "[66.102.1.27]:25, dsn=5.1.1, status=bounced (host gmail-smtp-in.l.google.com said: "
        "550-5.1.1 The email account does not exist (in reply to RCPT TO command))"
    )
    found = recognise(line)
    assert found.stage == "rcpt"
    assert "5.1.1" in found.enhanced
    assert 550 in found.codes
    assert "postfix" in found.sources
    assert "gmail" in found.sources


def test_an_exim_bounce_and_an_outlook_number() -> None:
    exim = (
        "SMTP error from remote mail server after RCPT TO:<x@y.example>:\n550 Unrouteable address"
    )
    assert recognise(exim).stage == "rcpt"
    assert "exim" in recognise(exim).sources
    outlook = "Task 'a@b.example - Sending' reported error (0x80042109) : Outlook cannot connect"
    found = recognise(outlook)
    assert found.errors == ["0x80042109"]
    assert "outlook" in found.sources


def test_nodemailer_errors_are_named() -> None:
    text = "Error: connect ECONNREFUSED 127.0.0.1:25 { code: 'ESOCKET', command: 'CONN' }"
    found = recognise(text)
    assert found.errors[:2] == ["ECONNREFUSED", "ESOCKET"]
    assert found.stage == "connect"
    assert "nodemailer" in found.sources


def _bounce() -> str:
    """A Postfix-style multipart/report, its human part base64-encoded."""
    human = base64.b64encode(b"The mail server said: the mailbox is full.\n").decode()
    return (
        "From: MAILER-DAEMON@mail.example.com\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\n\n'
        "--B\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"
        f"{human}\n"
        "--B\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; mail.example.com\n\n"
        "Final-Recipient: rfc822; carol@example.net\nAction: failed\nStatus: 5.2.2\n"
        "Remote-MTA: dns; mx.example.net\n"
        "Diagnostic-Code: smtp; 552 5.2.2 <carol@example.net>: Mailbox full\n\n"
        "--B\nContent-Type: message/rfc822\n\nSubject: hello\n\nover quota? no, my own text\n"
        "--B--\n"
    )


def test_a_whole_bounce_message_is_read_mime_aware() -> None:
    text = _bounce()
    assert "base64" in text  # the human part is encoded: only a MIME reader sees its words
    fields = dsn_fields(text)
    assert fields["status"] == "5.2.2"
    assert fields["action"] == "failed"
    assert fields["remote-mta"] == "dns; mx.example.net"
    assert fields["reporting-mta"] == "dns; mail.example.com"
    assert "Mailbox full" in fields["diagnostic-code"]
    assert "the mailbox is full" in message_text(text)
    assert "my own text" not in message_text(text)  # the returned message is not the reason
    found = recognise(text)
    assert 552 in found.codes
    assert "5.2.2" in found.enhanced
    assert found.stage == "delivery"


def test_pasted_dsn_fields_without_a_message() -> None:
    fields = dsn_fields("Action: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; 550 Relay denied")
    assert fields == {
        "action": "failed",
        "status": "5.0.0",
        "diagnostic-code": "smtp; 550 Relay denied",
    }


def test_a_text_with_no_signal_recognises_nothing() -> None:
    found = recognise("my email doesn't work, please help")
    assert not found.anything
