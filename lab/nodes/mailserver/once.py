"""One copy per Message-ID in a mailbox: what makes a relay's redelivery after a crash harmless.

A relay that crashed after the next hop said 250 but before it removed the
queue entry delivers the message again when it restarts (RFC 5321 §6.1:
duplicates are the price of never losing mail). The receiving store closes
that window: a message whose Message-ID the mailbox already holds is
acknowledged without a second copy, so every acknowledged message lands
exactly once.

The index is rebuilt from the Maildir itself (the header block of each
message) the first time a mailbox receives in this process, so it cannot
disagree with what is on disk after a crash of the receiver either.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
# Header blocks longer than this are not worth scanning for an id (and bound the reading).
_HEADER_LIMIT = 64 * 1024


def header_message_id(content: bytes) -> str | None:
    """The Message-ID header's value, looked up in the header block only."""
    end = content.find(b"\r\n\r\n")
    headers = content[:_HEADER_LIMIT] if end < 0 else content[: end + 2]
    match = _MESSAGE_ID.search(headers)
    if match is None or not match.group(1):
        return None
    return match.group(1).decode("utf-8", "replace")


class MessageIdIndex:
    """Message-ID -> stored id, per mailbox directory, including deliveries in flight."""

    def __init__(self) -> None:
        self._mailboxes: dict[Path, dict[str, asyncio.Future[str]]] = {}
        self._loading: dict[Path, asyncio.Task[dict[str, str]]] = {}

    async def deliver_once(
        self,
        directory: Path,
        message_id: str,
        store: Callable[[], Awaitable[str]],
    ) -> tuple[str, bool]:
        """(stored id, whether this call stored it): `store()` runs only for a new id.

        A duplicate that arrives while the first copy is still being written
        waits for it; should that write fail, the duplicate stores its own copy.
        """
        known = await self._index(directory)
        earlier = known.get(message_id)
        if earlier is not None:
            await asyncio.wait([earlier])
            if not earlier.cancelled():
                return earlier.result(), False
        pending: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        known[message_id] = pending

        def settle(write: asyncio.Future[str]) -> None:
            if not write.cancelled() and write.exception() is None:
                pending.set_result(write.result())
                return
            if known.get(message_id) is pending:
                del known[message_id]
            pending.cancel()

        # The write goes on if our caller is cancelled (the sending client hung up
        # mid-DATA): the store finishes a message it began, so the index must learn of it.
        write = asyncio.ensure_future(store())
        write.add_done_callback(settle)
        return await asyncio.shield(write), True

    async def _index(self, directory: Path) -> dict[str, asyncio.Future[str]]:
        if directory in self._mailboxes:
            return self._mailboxes[directory]
        task = self._loading.get(directory)
        if task is None:
            task = asyncio.create_task(asyncio.to_thread(_scan, directory))
            self._loading[directory] = task
        found = await asyncio.shield(task)
        if directory not in self._mailboxes:
            loop = asyncio.get_running_loop()
            index: dict[str, asyncio.Future[str]] = {}
            for message_id, stored in found.items():
                index[message_id] = loop.create_future()
                index[message_id].set_result(stored)
            self._mailboxes[directory] = index
            self._loading.pop(directory, None)
        return self._mailboxes[directory]


def _scan(directory: Path) -> dict[str, str]:
    """Message-ID -> stored id of every message in a Maildir (worker thread)."""
    found: dict[str, str] = {}
    for sub in ("new", "cur"):
        with contextlib.suppress(FileNotFoundError):
            for path in sorted((directory / sub).iterdir()):
                with contextlib.suppress(OSError), path.open("rb") as file:
                    message_id = header_message_id(file.read(_HEADER_LIMIT))
                if message_id is not None:
                    found.setdefault(message_id, path.name.split(":", 1)[0])
    return found
