"""The customer's colleagues: the office's other machines, whose SMTP sessions share the
customer's public address behind the ISP's NAT.

A scenario's client may say that they hold sessions open to its server
(`colleagues:`). Each backend opens them, from the client node's own place in
the network (its router, its NAT), once the lab is up, and closes them when it
goes down: every send of the lab, the fix's re-send and a diagnosis included,
meets a server that already counts them against the office's address.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab.errors import LabStartError
from lab.net import ConnectError

if TYPE_CHECKING:
    from lab.runtime.base import Lab

# Real seconds a colleague's session may take to connect and be greeted.
GREETING_TIMEOUT = 10.0


class ColleaguesError(LabStartError):
    """The colleagues' sessions could not be opened: the lab is not what the scenario says."""


@dataclass
class ColleagueSessions:
    """Open sessions, greeted by the server and left idle; closed by `close`."""

    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    greetings: list[str] = field(default_factory=list)

    def close(self) -> None:
        """Hang up every session (the server's counters drop with them)."""
        for writer in self.writers:
            with contextlib.suppress(Exception):
                writer.close()
        self.writers.clear()


async def open_colleague_sessions(lab: Lab) -> ColleagueSessions | None:
    """The sessions the scenario's `colleagues:` hold, opened and greeted; None without any.

    Raises:
        ColleaguesError: the server name did not resolve, or a session was not greeted
            with 220 (then those opened so far are closed).
    """
    name, client = lab.topology.scenario.client
    if client.colleagues is None:
        return None
    settings = client.settings
    port = client.colleagues.port or settings.port
    try:
        addresses = await lab.resolve(name, settings.server)
    except Exception as error:
        raise ColleaguesError(f"colleagues: {settings.server} does not resolve: {error}") from None
    if not addresses:
        raise ColleaguesError(f"colleagues: {settings.server} has no address")
    held = ColleagueSessions()
    try:
        for _ in range(client.colleagues.sessions):
            reader, writer = await lab.connector_for(name).open_connection(
                addresses[0], port, timeout=GREETING_TIMEOUT
            )
            held.writers.append(writer)
            line = await asyncio.wait_for(reader.readline(), GREETING_TIMEOUT)
            greeting = line.decode("utf-8", "replace").strip()
            if not greeting.startswith("220"):
                raise ColleaguesError(
                    f"colleagues: session {len(held.writers)} to {settings.server}:{port} was "
                    f"greeted with {greeting or 'nothing'!r}, not 220"
                )
            held.greetings.append(greeting)
    except (ConnectError, OSError, TimeoutError) as error:
        held.close()
        raise ColleaguesError(
            f"colleagues: session {len(held.writers) + 1} to {settings.server}:{port} failed: "
            f"{str(error) or type(error).__name__}"
        ) from None
    except BaseException:
        held.close()
        raise
    return held
