"""What every listener of one mail server shares, as its policy hooks see it.

`MailContext` bundles the server's configuration, event log, mailbox store,
recipient policy, DNS checks, rate limiter and, on a relay, the outbound
queue; `RelayQueue` is that queue as the inbound side uses it (implemented
by `queue.OutboundQueue`, faked in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lab.nodes.config import MailServerConfig
from lab.nodes.events import EventLog
from lab.nodes.mailserver.checks import ClientChecks
from lab.nodes.mailserver.limits import SessionGate
from lab.nodes.mailserver.rate_limit import RateLimiter
from lab.nodes.mailserver.recipients import RecipientPolicy
from lab.nodes.mailserver.store import MailStore


class RelayQueue(Protocol):
    """The relay's outbound queue as the inbound side uses it (`queue.OutboundQueue`)."""

    async def start(self) -> None:
        """Begin delivering what is queued."""
        ...

    async def stop(self) -> None:
        """Stop delivering; what is queued stays on disk."""
        ...

    def flush(self, domain: str | None = None) -> int:
        """Attempt the waiting entries (only those with a recipient in `domain`) now."""
        ...

    async def enqueue(
        self,
        *,
        sender: str,
        recipients: list[str],
        data: bytes,
        client_address: str,
        helo: str,
        authenticated_as: str | None,
    ) -> str:
        """Queue a message for `recipients`, durably, and return its queue id."""
        ...


@dataclass
class MailContext:
    """What every listener of one server shares."""

    config: MailServerConfig
    store: MailStore
    events: EventLog
    policy: RecipientPolicy
    queue: RelayQueue | None = None
    checks: ClientChecks | None = None
    limiter: RateLimiter | None = None
    gate: SessionGate | None = None
