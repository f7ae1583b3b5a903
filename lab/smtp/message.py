"""The test message a mail program sends: RFC 5322 headers and a plain-text body.

The body is padded so that the whole message is about `settings.size` bytes,
which is how a scenario exercises SIZE limits (`552 5.3.4`) without shipping
attachments around. The Message-ID is what the lab runner follows through
relays and mailboxes, so it is chosen by the caller.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from lab.scenario.model import MailSettings

INTRO = (
    "This is a test message sent by smtp-lab.\n"
    "If you can read this, the message was handed over and delivered.\n"
)
# Filler lines are short, 7-bit and never start with "." so that the message is the
# same on the wire as in the mailbox (no dot-stuffing, no transfer encoding).
FILLER_LINE = "smtp-lab padding 0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRS"
CRLF_LEN = 2


def new_message_id(hostname: str) -> str:
    """A fresh, globally unique Message-ID such as `<3f2a…@pc.customer.lan>`."""
    return f"<{uuid.uuid4().hex}@{hostname}>"


def build_message(
    settings: MailSettings, *, message_id: str, date: datetime | None = None
) -> bytes:
    """The message the mail program sends, with CRLF line ends, about `settings.size` bytes.

    It is never smaller than its headers and a short introduction; above that it
    is padded to exactly `settings.size` bytes except when one single byte would
    be left over.
    """
    date = date or datetime.now(UTC)
    bare = _render(settings, message_id, date, INTRO)
    return _render(settings, message_id, date, INTRO + _filler(settings.size - len(bare)))


def _render(settings: MailSettings, message_id: str, date: datetime, body: str) -> bytes:
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.sender
    message["To"] = ", ".join(settings.to)
    message["Subject"] = settings.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    message["X-Mailer"] = "smtp-lab"
    # An explicit 7bit body keeps the size predictable: the policy would otherwise be
    # free to pick quoted-printable and change the length of the padding.
    message.set_content(body, charset="us-ascii", cte="7bit")
    return message.as_bytes()


def _filler(missing: int) -> str:
    """Lines adding exactly `missing` bytes once rendered with CRLF (0 for ≤ 1)."""
    lines: list[str] = []
    while missing >= CRLF_LEN:
        length = min(len(FILLER_LINE), missing - CRLF_LEN)
        # Never leave a single byte: it cannot be a line of its own.
        if missing - CRLF_LEN - length == 1:
            length -= 1
        lines.append(FILLER_LINE[:length])
        missing -= length + CRLF_LEN
    return "".join(line + "\n" for line in lines)
