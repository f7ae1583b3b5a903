"""The connection rate limit of a mail server: sessions per client in a sliding window.

A pure decision with an injected clock; the handler asks it right before
the greeting (`MailHandler.greeting_refusal`) and answers `421` when a
client is over its limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.nodes.config import RateLimitConfig


@dataclass
class RateLimiter:
    """At most `connections` sessions per client address within a sliding window of `per`
    seconds; refused attempts do not count, so a client that waits a window gets in again.

    One per server, shared by its listeners (those the limit names).
    """

    config: RateLimitConfig
    clock: Callable[[], float]
    _served: dict[str, deque[float]] = field(default_factory=dict)

    def applies_to(self, port: int) -> bool:
        """Whether sessions on lab port `port` are limited."""
        return not self.config.ports or port in self.config.ports

    def admit(self, client: str) -> bool:
        """Count a new session from `client`; False when it is one too many."""
        now = self.clock()
        served = self._served.setdefault(client, deque())
        while served and now - served[0] >= self.config.per:
            served.popleft()
        if len(served) >= self.config.connections:
            return False
        served.append(now)
        return True
