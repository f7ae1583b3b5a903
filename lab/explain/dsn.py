"""Delivery status notifications in a pasted text (RFC 3464), MIME-aware (pure).

A bounce may arrive as a whole message (`--file bounce.eml`): a multipart/report
whose `message/delivery-status` part holds the machine-readable fields and whose
text part (often quoted-printable or base64) holds the human-readable reason. Or
only its fields were copied. `dsn_fields` reads both; `message_text` returns the
decoded human-readable text of a whole message, or the text itself.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

FIELDS = ("action", "status", "diagnostic-code", "remote-mta", "reporting-mta", "final-recipient")
_FIELD_LINE = re.compile(
    r"^\s*(Action|Status|Diagnostic-Code|Remote-MTA|Reporting-MTA|Final-Recipient)\s*:\s*(.+)$",
    re.IGNORECASE | re.MULTILINE,
)
_STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
# Enough of a header block to be a message, not a pasted line that happens to hold a colon.
_MESSAGE_START = re.compile(r"^(?:[\w-]+:[^\n]*\n){2,}", re.MULTILINE)


def _parse(text: str) -> Message | None:
    if not _MESSAGE_START.match(text.lstrip()) or "content-type" not in text.lower():
        return None
    return email.message_from_string(text.lstrip(), policy=email.policy.compat32)


def _status_parts(message: Message) -> list[Message]:
    groups: list[Message] = []
    for part in message.walk():
        if part.get_content_type() == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                groups += [item for item in payload if isinstance(item, Message)]
    return groups


def dsn_fields(text: str) -> dict[str, str]:
    """The DSN fields of `text` (lower-case names; the first recipient's where several).

    Continuation lines of a field (a long Diagnostic-Code) are joined.
    """
    fields: dict[str, str] = {}
    message = _parse(text)
    if message is not None:
        for group in _status_parts(message):
            for name in FIELDS:
                value = group.get(name)
                if value and name not in fields:
                    fields[name] = " ".join(str(value).split())
    if not fields:
        for name, value in _FIELD_LINE.findall(text):
            fields.setdefault(name.lower(), " ".join(value.split()))
    status = fields.get("status", "").split(" ", 1)[0]
    if status and not _STATUS.match(status):
        fields.pop("status")
    elif status:
        fields["status"] = status
    return fields


def message_text(text: str) -> str:
    """The human-readable text of a whole message (parts decoded), else `text` itself.

    The delivery-status fields are kept too: they carry the diagnostic reply.
    """
    message = _parse(text)
    if message is None or not message.is_multipart():
        if message is not None and message.get_content_maintype() == "text":
            return _decoded(message) or text
        return text
    pieces: list[str] = [f"Subject: {message.get('subject', '')}"]
    for part in message.walk():
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html"):
            pieces.append(_decoded(part))
        elif kind == "message/delivery-status":
            for group in _status_parts(part):
                pieces += [f"{name}: {value}" for name, value in group.items()]
        elif kind in ("message/rfc822", "text/rfc822-headers"):
            break  # the returned message: its text is the customer's, not the reason
    return "\n".join(piece for piece in pieces if piece)


def _decoded(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")
