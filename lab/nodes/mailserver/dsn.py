"""Bounces: build and read RFC 3464 delivery status notifications (pure, `email` package only).

A bounce is a `multipart/report; report-type=delivery-status` with three parts:
a plain-words explanation for the person who sent the message, the
machine-readable `message/delivery-status` block (one per-message group, one
group per failed recipient), and the original message's headers as
`text/rfc822-headers` so that the sender (and the lab's checks) can tell which
message came back by its Message-ID.

`parse_dsn` is the reverse, used by the lab runner, the TUI and the tests to
assert on what bounced and why without scraping the human text.
"""

from __future__ import annotations

import email.utils
import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser, HeaderParser

# Diagnostic-Code types (RFC 3464 §2.3.6): "smtp" carries a reply the remote server
# gave; anything this MTA concluded itself (DNS, connect, timeout) is an X- type.
SMTP_DIAGNOSTIC = "smtp"
LOCAL_DIAGNOSTIC = "X-Lab"

_FOLD = re.compile(r"\r?\n(?=[ \t])")

SUBJECT = "Undelivered Mail Returned to Sender"

# What a status means, in words a sender understands without knowing RFC 3463.
# Keys are looked up most specific first: "5.1.10", then "5.1", then "5".
_PLAIN_REASONS: dict[str, str] = {
    "5.1.1": "the receiving server says this mailbox does not exist",
    "5.1.2": "the recipient's domain does not exist (DNS has no such name)",
    "5.1.10": "the recipient's domain publishes a null MX record: it accepts no mail at all",
    "5.2.1": "the recipient's mailbox is disabled",
    "5.2.2": "the recipient's mailbox is full",
    "5.3.4": "the message is larger than the receiving server accepts",
    "5.4.4": "no mail server could be found for the recipient's domain",
    "5.4.7": "the message could not be delivered before its time in the queue ran out",
    "5.7.1": "the receiving server refused the message by policy",
    "5.1": "the recipient address was rejected",
    "5.2": "the recipient's mailbox cannot take the message",
    "5.3": "the receiving mail system cannot take the message",
    "5.4": "the message could not be routed to the recipient",
    "5.5": "the receiving server did not understand the conversation",
    "5.7": "the receiving server refused the message by policy",
    "5": "the message was refused permanently",
}


@dataclass(frozen=True)
class FailedRecipient:
    """What went wrong for one recipient: the input of one per-recipient DSN group.

    `diagnostic` is the remote reply ("550 5.1.1 <bob@example.net>: ...") when
    `diagnostic_type` is "smtp", else this MTA's own words ("connect to
    mx.example.net[10.0.0.5]:25: Connection timed out"). `stage` is the command
    the remote reply answered ("RCPT TO"), for the human-readable part.
    """

    address: str
    status: str
    diagnostic: str
    diagnostic_type: str = SMTP_DIAGNOSTIC
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    stage: str | None = None


@dataclass(frozen=True)
class DsnRecipient:
    """One per-recipient group of a parsed DSN; addresses without their type prefix."""

    recipient: str
    action: str
    status: str
    diagnostic_type: str | None
    diagnostic_code: str | None
    remote_mta: str | None
    last_attempt_date: str | None

    @property
    def reply_code(self) -> int | None:
        """The remote server's basic reply code (550), only when the diagnostic is a reply.

        A diagnostic of this MTA's own ("connect to mx[10.213.1.12]:25: ...") has no
        reply code, even when it happens to contain three digits.
        """
        text = self.diagnostic_code or ""
        if (self.diagnostic_type or "").lower() != SMTP_DIAGNOSTIC:
            return None
        head, rest = text[:3], text[3:4]
        if head.isdigit() and head[0] in "245" and rest in ("", " ", "-"):
            return int(head)
        return None


@dataclass(frozen=True)
class DsnReport:
    """A parsed delivery status notification."""

    to: str | None
    subject: str | None
    reporting_mta: str | None
    arrival_date: str | None
    queue_id: str | None
    recipients: tuple[DsnRecipient, ...]
    original_message_id: str | None
    explanation: str

    def recipient(self, address: str) -> DsnRecipient:
        """The group for `address` (case-insensitive); KeyError if it is not in the report."""
        for entry in self.recipients:
            if entry.recipient.lower() == address.lower():
                return entry
        raise KeyError(address)


def plain_reason(status: str) -> str:
    """A sentence fragment saying what `status` means ("the mailbox does not exist")."""
    parts = status.split(".")
    for length in (3, 2, 1):
        reason = _PLAIN_REASONS.get(".".join(parts[:length]))
        if reason:
            return reason
    return "the message could not be delivered"


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    original: bytes,
    recipients: Sequence[FailedRecipient],
    arrival_date: datetime,
    queue_id: str | None = None,
    now: datetime | None = None,
) -> bytes:
    """The bounce for `recipients` of `original`, addressed to `sender`, as CRLF bytes.

    Args:
        reporting_mta: this server's hostname (From: MAILER-DAEMON@it, Reporting-MTA).
        sender: the envelope sender of the original message, who gets the bounce.
        original: the original message; only its header block is returned.
        recipients: the recipients that failed, at least one.
        arrival_date: when the original was accepted.
        queue_id: the original's queue id, quoted so the sender can ask the admin.
        now: the Date of the bounce (tests pin it).
    """
    if not recipients:
        raise ValueError("a DSN needs at least one failed recipient")
    now = now or datetime.now(UTC)
    report = EmailMessage(policy=policy.SMTP)
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_mta}>"
    report["To"] = sender
    report["Subject"] = SUBJECT
    report["Date"] = email.utils.format_datetime(now)
    report["Message-ID"] = email.utils.make_msgid(domain=reporting_mta)
    # RFC 3834: marks the bounce as machine-generated so that autoresponders stay quiet.
    report["Auto-Submitted"] = "auto-replied"
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")
    report.preamble = "This is a MIME-encapsulated message.\r\n"

    text = _explanation(reporting_mta, recipients, queue_id)
    explanation = EmailMessage(policy=policy.SMTP)
    # Readable as raw text too (people do open bounces with `less`): 7bit when possible.
    explanation.set_content(text, cte="7bit" if text.isascii() else None)
    explanation["Content-Description"] = "Notification"
    report.attach(explanation)

    # An EmailMessage so that `attach` accepts it; its payload is a list of header blocks,
    # which is how the email package represents (and generates) message/delivery-status.
    status = EmailMessage(policy=policy.SMTP)
    status.set_type("message/delivery-status")
    status["Content-Description"] = "Delivery report"
    per_message = Message(policy=policy.SMTP)
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    if queue_id:
        per_message["X-Lab-Queue-ID"] = queue_id
    per_message["Arrival-Date"] = email.utils.format_datetime(arrival_date)
    groups: list[Message | str] = [per_message]
    for failed in recipients:
        group = Message(policy=policy.SMTP)
        group["Final-Recipient"] = f"rfc822; {failed.address}"
        group["Action"] = "failed"
        group["Status"] = failed.status
        if failed.remote_mta:
            group["Remote-MTA"] = f"dns; {failed.remote_mta}"
        group["Diagnostic-Code"] = f"{failed.diagnostic_type}; {failed.diagnostic}"
        group["Last-Attempt-Date"] = email.utils.format_datetime(failed.last_attempt or now)
        groups.append(group)
    status.set_payload(groups)
    report.attach(status)

    headers = EmailMessage(policy=policy.SMTP)
    headers.set_content(_header_block(original), subtype="rfc822-headers")
    headers["Content-Description"] = "Undelivered Message Headers"
    report.attach(headers)
    return report.as_bytes(policy=policy.SMTP)


def parse_dsn(data: bytes) -> DsnReport:
    """Read a DSN built here or by another MTA; ValueError if `data` is not one."""
    message = BytesParser(policy=policy.compat32).parsebytes(data)
    if message.get_content_type() != "multipart/report" or not message.is_multipart():
        raise ValueError(f"not a delivery status notification: {message.get_content_type()}")
    explanation = ""
    groups: list[Message] = []
    original_message_id: str | None = None
    for part in message.get_payload():
        assert isinstance(part, Message)
        content_type = part.get_content_type()
        if content_type == "message/delivery-status":
            payload = part.get_payload()
            groups = [block for block in payload if isinstance(block, Message)]
        elif content_type in ("text/rfc822-headers", "message/rfc822"):
            original_message_id = _original_message_id(part)
        elif content_type == "text/plain" and not explanation:
            explanation = _text(part)
    if not groups:
        raise ValueError("DSN has no message/delivery-status part")
    per_message, per_recipient = groups[0], groups[1:]
    recipients = tuple(_recipient(group) for group in per_recipient if "Final-Recipient" in group)
    return DsnReport(
        to=_header(message, "To"),
        subject=_header(message, "Subject"),
        reporting_mta=_without_type(_header(per_message, "Reporting-MTA")),
        arrival_date=_header(per_message, "Arrival-Date"),
        queue_id=_header(per_message, "X-Lab-Queue-ID")
        or _header(per_message, "X-Postfix-Queue-ID"),
        recipients=recipients,
        original_message_id=original_message_id,
        explanation=explanation,
    )


# --- helpers ---------------------------------------------------------------------------------


def _explanation(
    reporting_mta: str, recipients: Sequence[FailedRecipient], queue_id: str | None
) -> str:
    lines = [
        f"This is the mail system at {reporting_mta}.",
        "",
        "Your message could not be delivered to "
        + ("the recipient below." if len(recipients) == 1 else "the recipients below."),
        "Nothing more will be tried. The headers of your message are attached",
        "so that you can tell which message this was.",
        "",
    ]
    for failed in recipients:
        lines += _wrap(f"<{failed.address}>: {plain_reason(failed.status)}.", "")
        if failed.diagnostic_type == SMTP_DIAGNOSTIC:
            who = f"The server {failed.remote_mta}" if failed.remote_mta else "The server"
            said = f"{who} answered"
            said += f" our {failed.stage} command with:" if failed.stage else ":"
            lines += _wrap(said, "    ")
        else:
            lines += _wrap("The last problem was:", "    ")
        lines += _wrap(failed.diagnostic, "        ")
        lines.append("")
    if queue_id:
        lines.append(f"If you ask the mail administrator about it, quote queue id {queue_id}.")
    return "\n".join(lines) + "\n"


def _wrap(text: str, indent: str) -> list[str]:
    """Lines of at most 76 characters; long words (addresses) are never split."""
    return textwrap.wrap(
        text,
        width=76,
        initial_indent=indent,
        subsequent_indent=indent + "  " if indent else "  ",
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent]


def _header_block(original: bytes) -> str:
    """The original's header section, unfolded lines kept as they were."""
    end = original.find(b"\r\n\r\n")
    if end < 0:
        end = original.find(b"\n\n")
    block = original if end < 0 else original[:end]
    # Headers are normally ASCII; replace anything else rather than fail to bounce.
    text = block.decode("utf-8", errors="replace").replace("\r\n", "\n")
    return text.rstrip("\n") + "\n"


def _original_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list):  # message/rfc822: a list holding the message
        inner = payload[0] if payload else None
        return _header(inner, "Message-ID") if isinstance(inner, Message) else None
    raw = part.get_payload(decode=True)
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(payload)
    return _header(HeaderParser().parsestr(text), "Message-ID")


def _recipient(group: Message) -> DsnRecipient:
    diagnostic = _header(group, "Diagnostic-Code")
    diagnostic_type: str | None = None
    if diagnostic is not None and ";" in diagnostic:
        kind, _, diagnostic = diagnostic.partition(";")
        diagnostic_type, diagnostic = kind.strip(), diagnostic.strip()
    return DsnRecipient(
        recipient=_without_type(_header(group, "Final-Recipient")) or "",
        action=(_header(group, "Action") or "").lower(),
        status=_header(group, "Status") or "",
        diagnostic_type=diagnostic_type,
        diagnostic_code=diagnostic,
        remote_mta=_without_type(_header(group, "Remote-MTA")),
        last_attempt_date=_header(group, "Last-Attempt-Date"),
    )


def _header(message: Message | None, name: str) -> str | None:
    """A header's value, unfolded (long Diagnostic-Codes are folded on the wire)."""
    if message is None:
        return None
    value = message.get(name)
    if value is None:
        return None
    # Unfolding removes the line break only (RFC 5322 §2.2.3); the text keeps its spaces.
    return _FOLD.sub("", str(value)).strip()


def _without_type(value: str | None) -> str | None:
    """ "rfc822; bob@example.net" -> "bob@example.net"."""
    if value is None:
        return None
    return value.partition(";")[2].strip() if ";" in value else value.strip()


def _text(part: Message) -> str:
    raw = part.get_payload(decode=True)
    if isinstance(raw, bytes):
        charset = part.get_content_charset() or "utf-8"
        text = raw.decode(charset, errors="replace")
    else:
        text = str(part.get_payload())
    return text.replace("\r\n", "\n")
