"""SMTP inspection: the firewall "fixup" that rewrites SMTP sessions passing through it.

Cisco's PIX ("fixup protocol smtp", Mailguard) and its successor the ASA
("inspect esmtp") sat in the middle of every SMTP connection through the
firewall and rewrote it. What support desks still meet, and what this
program reproduces:

- the server's greeting text is replaced by asterisks, "220 ***********"
  (banner obfuscation), so nobody outside learns the server software;
- STARTTLS is masked in EHLO replies: the ASA turns the line into
  "250-XXXXXXXA", so the client sees no STARTTLS offered;
- a STARTTLS command the client sends anyway never reaches the server as
  such: the PIX overwrote commands outside its allowed set with X's, so the
  server receives "XXXXXXXX" and answers "500 ... not recognized" itself.
  (The firewall does not answer on the server's behalf; a 454 would come
  from the server.)

Everything else passes unchanged: the message content (between DATA's 354
and the final dot) is never rewritten, and a STARTTLS that was let through
and accepted turns the rest of the connection into opaque TLS.

The rewriting is `InspectedSession` (no I/O); `splice` runs it between two
stream pairs. Two ways to run it:

- in a router container, `serve(config)`: a TCP proxy to which iptables
  REDIRECTs the inspected ports; each connection goes on to its original
  destination (SO_ORIGINAL_DST), or to `InspectionConfig.upstream`;
- in the local backend, `Interposer.wrap`: the emulated connection to the
  server, already open, gets an in-process inspector in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.net import ConnectError, Streams, open_tcp
from lab.nodes.config import InspectionConfig, RouterConfig
from lab.nodes.events import EventLog

CHUNK = 65536
MAX_LINE = 4096  # a command or reply line longer than this is passed on as it is
CONNECT_TIMEOUT = 10.0
BACKLOG = 1024
MASKED_STARTTLS = b"XXXXXXXA"  # what an ASA leaves of "STARTTLS" in an EHLO reply
MASKED_COMMAND = b"XXXXXXXX"  # what a PIX leaves of a command it does not allow
SO_ORIGINAL_DST = 80  # linux/netfilter_ipv4.h: where a REDIRECTed connection was going

Notify = Callable[..., None]


def _ignore(event: str, **fields: object) -> None:
    """The default `Notify`: inspection events go nowhere."""


@dataclass
class InspectedSession:
    """The state of one inspected SMTP connection and its rewriting rules (no I/O).

    Feed it whole lines (CRLF included) in the order they pass: `from_server`
    and `from_client` return what goes on. Once `opaque` is set (TLS was
    negotiated through it), lines are no longer looked at.
    """

    config: InspectionConfig
    notify: Notify = _ignore
    opaque: bool = False
    _in_banner: bool = True
    _in_data: bool = False
    _starttls_sent: bool = False

    def from_server(self, line: bytes) -> bytes:
        """Rewrite a reply line on its way to the client."""
        if self.opaque:
            return line
        code, separator, text = line[:3], line[3:4], line[4:]
        final = separator != b"-"
        if self._in_banner:
            self._in_banner = not final
            if self.config.mangle_banner and code == b"220":
                body = text.rstrip(b"\r\n")
                if body:
                    self.notify("banner-mangled", original=body.decode("utf-8", "replace"))
                return code + separator + b"*" * len(body) + text[len(body) :]
            return line
        if code == b"354":
            self._in_data = True
        elif self._starttls_sent and final:
            self._starttls_sent = False
            # The server agreed to TLS: from here on the bytes are not SMTP.
            self.opaque = code == b"220"
        elif self.config.strip_starttls and code == b"250" and text.strip().upper() == b"STARTTLS":
            self.notify("starttls-masked")
            return code + separator + MASKED_STARTTLS + text[len(text.rstrip(b"\r\n")) :]
        return line

    def from_client(self, line: bytes) -> bytes:
        """Rewrite a command line on its way to the server."""
        if self.opaque:
            return line
        if self._in_data:
            if line in (b".\r\n", b".\n"):
                self._in_data = False
            return line
        if line.strip().upper() == b"STARTTLS":
            if self.config.strip_starttls:
                self.notify("command-masked", command="STARTTLS")
                return MASKED_COMMAND + line[len(line.rstrip(b"\r\n")) :]
            self._starttls_sent = True
        return line


async def splice(client: Streams, server: Streams, session: InspectedSession) -> None:
    """Carry one connection both ways through `session` until either side closes."""
    await asyncio.gather(
        _pump(client[0], server[1], session.from_client, session),
        _pump(server[0], client[1], session.from_server, session),
    )


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    rewrite: Callable[[bytes], bytes],
    session: InspectedSession,
) -> None:
    """Copy `reader` to `writer` line by line through `rewrite` (raw once opaque).

    Reads chunks, never `readline`: after STARTTLS the peer sends TLS records
    that need not contain a newline, and a pump waiting for one would hang.
    """
    pending = b""
    try:
        while chunk := await reader.read(CHUNK):
            pending += chunk
            out: list[bytes] = []
            while not session.opaque and (end := pending.find(b"\n")) >= 0:
                out.append(rewrite(pending[: end + 1]))
                pending = pending[end + 1 :]
            if session.opaque or len(pending) > MAX_LINE:
                out.append(pending)
                pending = b""
            writer.write(b"".join(out))
            await writer.drain()
        if pending:
            writer.write(pending)
    except OSError:
        pass
    finally:
        # Closing this side's peer ends the other pump too (its reader sees EOF).
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# --- in-process: the local backend ---------------------------------------------------------------


class Interposer:
    """Puts a middlebox in front of connections that are already open (local backend).

    Each wrapped connection gets a socket pair: the caller talks to one end,
    a background task carries the other end to the server. `close` cancels
    what is still running.
    """

    def __init__(self, notify: Notify | None = None) -> None:
        self._notify = notify
        self._tasks: set[asyncio.Task[None]] = set()

    async def interpose(
        self, server: Streams, carry: Callable[[Streams, Streams], Coroutine[Any, Any, None]]
    ) -> Streams:
        """Streams that reach `server` through `carry(inner, server)`, run in the background."""
        mine, theirs = socket.socketpair()
        try:
            inner = await asyncio.open_connection(sock=theirs)
            outer = await asyncio.open_connection(sock=mine)
        except BaseException:
            mine.close()
            theirs.close()
            raise
        task = asyncio.get_running_loop().create_task(carry(inner, server))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return outer

    async def wrap(self, server: Streams, config: InspectionConfig) -> Streams:
        """Streams that reach `server` through the inspector."""
        session = InspectedSession(config, self._notify or _ignore)
        return await self.interpose(
            server, lambda inner, upstream: splice(inner, upstream, session)
        )

    def close(self) -> None:
        """Cancel the connections still carried."""
        for task in list(self._tasks):
            task.cancel()


# --- standalone: the router container ------------------------------------------------------------


def original_destination(sock: socket.socket) -> tuple[str, int]:
    """Where a connection REDIRECTed by iptables was going (IPv4 only).

    Raises:
        OSError: the connection was not redirected (no conntrack entry).
    """
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, packed = struct.unpack_from("!2xH4s", raw)
    return str(ipaddress.IPv4Address(packed)), int(port)


def _upstream(config: InspectionConfig, sock: socket.socket) -> tuple[str, int]:
    if config.upstream is not None:
        host, _, port = config.upstream.rpartition(":")
        return host, int(port)
    return original_destination(sock)


async def start(
    config: InspectionConfig,
    *,
    host: str = "0.0.0.0",
    port: int | None = None,
    events: EventLog | None = None,
) -> asyncio.Server:
    """Listen for connections to inspect (`port` defaults to `config.listen_port`)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            target = _upstream(config, writer.get_extra_info("socket"))
            server = await open_tcp(*target, timeout=CONNECT_TIMEOUT)
        except (ConnectError, OSError, ValueError) as error:
            if events is not None:
                events.emit("inspection-failed", client=str(peer), error=str(error))
            writer.close()
            return

        def notify(event: str, **fields: object) -> None:
            if events is not None:
                events.emit(event, client=str(peer), server=f"{target[0]}:{target[1]}", **fields)

        await splice((reader, writer), server, InspectedSession(config, notify))

    return await asyncio.start_server(
        handle, host, config.listen_port if port is None else port, backlog=BACKLOG
    )


async def serve(config: RouterConfig, events: EventLog | None = None) -> None:
    """Run the inspecting proxy of a router until cancelled.

    The router sets up `iptables -t nat -A PREROUTING -i <inside> -p tcp
    --dport <port> -j REDIRECT --to-ports <listen_port>` for each inspected port.

    Raises:
        ValueError: the router has no inspection configured.
    """
    if config.inspection is None:
        raise ValueError(f"{config.name}: no inspection configured")
    server = await start(config.inspection, host=config.listen_host, events=events)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.nodes.inspection <router-config.json>`: the proxy alone."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m lab.nodes.inspection <router-config.json>\n")
        return 2
    try:
        config = RouterConfig.model_validate_json(Path(args[0]).read_bytes())
    except (OSError, ValueError) as error:
        sys.stderr.write(f"{args[0]}: not a router configuration: {error}\n")
        return 2
    if config.inspection is None:
        sys.stderr.write(f"{args[0]}: the router has no inspection configured\n")
        return 2
    events = EventLog(config.data_dir, config.name, max_bytes=config.events_max_bytes)
    try:
        asyncio.run(serve(config, events))
    except KeyboardInterrupt:
        pass
    finally:
        events.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
