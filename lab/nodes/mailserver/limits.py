"""What one mail server grants its clients: sessions at once, per client, file descriptors.

A flood of connections must meet a clear `421 4.7.0` rather than accept()
failing on the file-descriptor limit. `SessionGate` counts the open
sessions (all of them, and per client address) and says which new one to
refuse; its capacity is the configured cap, lowered to what the process's
descriptor limit can hold (`fd_capacity`). `raise_fd_limit` lifts the soft
limit to the hard one where the system allows it, so that this lowering is
rare. When accept() still runs out (a burst larger than the limit, before
any refusal could close a socket), asyncio pauses the listener for a second
and reports it; `quiet_accept_exhaustion` turns that report into one event
in the node's log instead of a traceback on the terminal.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from typing import Any

from lab.nodes.events import EventLog

# A session holds its socket and, while its message is committed, a Maildir file.
FDS_PER_SESSION = 2
# Listening sockets, the event log, DNS, the store's directory fsyncs, and the sockets
# accepted but not yet refused and closed (a few of asyncio's bursts, `acceptor.ACCEPT_BURST`).
FD_RESERVE = 128
# asyncio's wording when accept() fails for lack of descriptors or memory.
_ACCEPT_EXHAUSTED = "socket.accept() out of system resource"


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit where allowed; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
        return hard
    return soft


def fd_capacity(fd_limit: int) -> int:
    """How many sessions a process with `fd_limit` descriptors can hold, with headroom."""
    return max(1, (fd_limit - FD_RESERVE) // FDS_PER_SESSION)


class SessionGate:
    """Counts open sessions and refuses those beyond the caps.

    The overall cap is checked as the connection is made, before anything is
    read: a refusal then closes its socket on the loop's next turn, which is
    what keeps a flood within the descriptors. The per-client cap needs the
    client's address (the PROXY header's, in the local backend), so it is
    checked at the greeting.

    Args:
        connections: the configured cap on open sessions.
        per_client: the configured cap per client address.
        fd_limit: the process's soft descriptor limit; lowers `capacity` if needed.
    """

    def __init__(self, connections: int, per_client: int, fd_limit: int) -> None:
        self.capacity = min(connections, fd_capacity(fd_limit))
        self.per_client = per_client
        self._open = 0
        self._by_client: Counter[str] = Counter()

    @property
    def open(self) -> int:
        """Sessions admitted and not yet released."""
        return self._open

    def open_session(self) -> bool:
        """Count a new connection; False (nothing counted) when the server is full."""
        if self._open >= self.capacity:
            return False
        self._open += 1
        return True

    def close_session(self) -> None:
        """Forget a connection `open_session` counted."""
        self._open -= 1

    def admit_client(self, client: str) -> bool:
        """Count a session of `client`; False (nothing counted) when it has its share."""
        if self._by_client[client] >= self.per_client:
            return False
        self._by_client[client] += 1
        return True

    def release_client(self, client: str) -> None:
        """Forget a session `admit_client` counted."""
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]


def quiet_accept_exhaustion(
    loop: asyncio.AbstractEventLoop, listening: set[int], events: EventLog
) -> None:
    """Report accept() running out of descriptors as an event, not a traceback.

    `listening` holds the descriptors of the server's listening sockets (the
    server empties it when it stops). Other reports, and those about other
    servers' sockets, go to the handler that was in place (the loop's default
    one when there was none).
    """
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_EXHAUSTED and _fileno(context.get("socket")) in (
            listening
        ):
            events.emit("accept-paused", reason=str(context.get("exception")))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def _fileno(sock: Any) -> int | None:
    try:
        return int(sock.fileno()) if sock is not None else None
    except (OSError, ValueError):
        return None
