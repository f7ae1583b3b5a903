"""A mailbox of a running lab as a test sees it: wait until messages arrive, parsed."""

from __future__ import annotations

import email
import time
from collections.abc import Callable
from email.message import Message

POLL_INTERVAL = 0.05


class Mailbox:
    """The messages for one address, on whichever lab mail server holds its domain.

    Bounces (RFC 3464 DSNs, `multipart/report`) land in the sender's mailbox
    like any other message.
    """

    def __init__(self, address: str, read: Callable[[], list[bytes]]) -> None:
        self.address = address
        self._read = read

    def messages(self) -> list[Message]:
        """What is there now, oldest first."""
        return [email.message_from_bytes(raw) for raw in self._read()]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[Message]:
        """At least `count` messages, oldest first, once they are there.

        Raises:
            TimeoutError: fewer than `count` arrived within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            raw = self._read()
            if len(raw) >= count:
                return [email.message_from_bytes(data) for data in raw]
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.address}: {len(raw)} message(s) after {timeout:g} s, waited for {count}"
                )
            time.sleep(POLL_INTERVAL)
