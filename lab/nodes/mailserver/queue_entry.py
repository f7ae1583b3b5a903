"""A queued message's record: envelope, pending recipients, attempts, failures, JSON form.

`QueueEntry` is what the relay's queue keeps in memory and writes as
`<id>.json` (`queue_files.py`; the message bytes stay in `<id>.eml` until
an attempt reads them); `QueueEntryView` is the read-only picture of it
that `smtplab`, the TUI and tests get from `OutboundQueue.snapshot`.
`RecipientFailure` is the last thing that went wrong for one recipient:
what its bounce will say. The address helpers read an entry's envelope.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from lab.nodes.mailserver.delivery import RecipientResult

NULL_SENDER = "<>"
FORMAT_VERSION = 1


def is_null_sender(sender: str) -> bool:
    """MAIL FROM:<> — a bounce or other notification that must never be bounced."""
    return sender.strip() in ("", NULL_SENDER)


@dataclass(frozen=True)
class QueueEntryView:
    """What the queue holds for one message right now (for `smtplab`, the TUI, tests)."""

    id: str
    sender: str
    recipients: tuple[str, ...]  # still pending
    attempts: int
    queued_at: float  # epoch seconds
    next_attempt_at: float  # epoch seconds; expiry time when no retry is left
    expires_at: float
    last_error: str | None
    in_progress: bool

    @property
    def next_attempt_in(self) -> float:
        """Seconds until the next attempt (0 when due or running)."""
        return max(0.0, self.next_attempt_at - time.time())


@dataclass
class RecipientFailure:
    """The last thing that went wrong for a recipient: what its bounce will say."""

    status: str
    diagnostic: str
    diagnostic_type: str
    remote_mta: str | None
    stage: str | None

    @classmethod
    def of(cls, result: RecipientResult) -> RecipientFailure:
        return cls(
            result.status,
            result.diagnostic,
            result.diagnostic_type,
            result.remote_mta,
            result.stage,
        )


@dataclass
class QueueEntry:
    """A queued message's metadata; the bytes stay on disk until an attempt reads them."""

    id: str
    sender: str
    recipients: list[str]
    queued_at: float
    expires_at: float
    next_attempt_at: float
    attempts: int = 0
    last_attempt_at: float | None = None
    last_error: str | None = None
    message_id: str | None = None
    client_address: str | None = None
    helo: str | None = None
    authenticated_as: str | None = None
    failures: dict[str, RecipientFailure] = field(default_factory=dict)

    @property
    def due_at(self) -> float:
        return min(self.next_attempt_at, self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "sender": self.sender,
            "recipients": self.recipients,
            "queued_at": self.queued_at,
            "expires_at": self.expires_at,
            "next_attempt_at": self.next_attempt_at,
            "attempts": self.attempts,
            "last_attempt_at": self.last_attempt_at,
            "last_error": self.last_error,
            "message_id": self.message_id,
            "client_address": self.client_address,
            "helo": self.helo,
            "authenticated_as": self.authenticated_as,
            "failures": {rcpt: vars(failure) for rcpt, failure in self.failures.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> QueueEntry:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown queue file version {data.get('version')!r}")
        return cls(
            id=str(data["id"]),
            sender=str(data["sender"]),
            recipients=[str(r) for r in data["recipients"]],
            queued_at=float(data["queued_at"]),
            expires_at=float(data["expires_at"]),
            next_attempt_at=float(data["next_attempt_at"]),
            attempts=int(data["attempts"]),
            last_attempt_at=data.get("last_attempt_at"),
            last_error=data.get("last_error"),
            message_id=data.get("message_id"),
            client_address=data.get("client_address"),
            helo=data.get("helo"),
            authenticated_as=data.get("authenticated_as"),
            failures={rcpt: RecipientFailure(**value) for rcpt, value in data["failures"].items()},
        )

    def view(self, in_progress: bool) -> QueueEntryView:
        return QueueEntryView(
            id=self.id,
            sender=self.sender,
            recipients=tuple(self.recipients),
            attempts=self.attempts,
            queued_at=self.queued_at,
            next_attempt_at=self.due_at,
            expires_at=self.expires_at,
            last_error=self.last_error,
            in_progress=in_progress,
        )
