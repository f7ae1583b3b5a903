"""Line impairments: what a satellite hop, a thin uplink or a middlebox does to a TCP
connection's bytes: added delay each way, a bandwidth cap, and a reset once the client
has sent so many bytes (mid-DATA).

`LineShape` decides, without I/O, when each chunk may go on and where the reset falls;
`carry` runs it between two stream pairs. As with SMTP inspection it runs two ways:
in a router container, `start` listens where iptables REDIRECTs the impaired ports and
goes on to each connection's original destination; on the local backend,
`interpose_line` puts it in front of a connection already open. Lost packets are
real on docker (iptables drops them); the local backend, having no packets, gives a
lost chunk the delay of a retransmission instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from lab.net import ConnectError, Streams, open_tcp
from lab.nodes.config import LineConfig
from lab.nodes.events import EventLog
from lab.nodes.inspection import Interposer, original_destination

CHUNK = 4096  # small reads, so that a bandwidth cap paces evenly
WINDOW = 16  # chunks in flight per direction: a sender is held back as by a TCP window
RETRANSMIT_DELAY = 0.2  # Linux's minimum RTO: what a lost segment costs (local emulation)
CONNECT_TIMEOUT = 10.0
BACKLOG = 1024

Notify = Callable[..., None]


def _ignore(event: str, **fields: object) -> None:
    """The default `Notify`: line events go nowhere."""


class LineReset(Exception):
    """The middlebox cuts the connection: both sides get a reset."""


@dataclass
class LineShape:
    """One impaired connection's pacing and reset point (no I/O).

    `schedule` is called with each chunk as it arrives and says when it may be
    delivered (a `time.monotonic()` value): after the line has carried the
    chunks before it at the capped rate, plus the one-way delay. Upstream
    chunks are counted against `reset_after`: the chunk that crosses it is cut
    at the limit and `LineReset` follows.
    """

    config: LineConfig
    emulate_loss: bool = False  # the local backend: a lost chunk costs a retransmission
    rng: random.Random = field(default_factory=random.Random)
    sent_up: int = 0
    _free_at: dict[bool, float] = field(default_factory=lambda: {True: 0.0, False: 0.0})

    def schedule(self, size: int, *, upstream: bool, now: float) -> float:
        """When a chunk of `size` bytes arriving `now` reaches the other side."""
        bandwidth = self.config.bandwidth
        serialise = size * 8 / bandwidth if bandwidth else 0.0
        free = max(now, self._free_at[upstream]) + serialise
        if self.emulate_loss and self.config.loss and self.rng.random() < self.config.loss:
            free += RETRANSMIT_DELAY
        self._free_at[upstream] = free
        return free + self.config.latency

    def admit(self, chunk: bytes) -> bytes:
        """The part of an upstream chunk that passes before the reset point (all of it
        when there is none); the caller resets the connection when it is shorter."""
        limit = self.config.reset_after
        if limit is None:
            return chunk
        room = max(0, limit - self.sent_up)
        passed = chunk[:room]
        self.sent_up += len(passed)
        return passed


async def carry(
    client: Streams, server: Streams, shape: LineShape, notify: Notify = _ignore
) -> None:
    """Carry one connection both ways through the line until either side closes or the
    line resets it (then both get a TCP reset)."""
    up = asyncio.create_task(_direction(client[0], server[1], shape, upstream=True))
    down = asyncio.create_task(_direction(server[0], client[1], shape, upstream=False))
    try:
        await asyncio.gather(up, down)
    except LineReset:
        notify("line-reset", after_bytes=shape.sent_up)
        for writer in (client[1], server[1]):
            _reset(writer)
    except OSError:
        pass
    finally:
        # Also when cancelled (the lab goes down mid-connection): nothing is left open.
        for task in (up, down):
            task.cancel()
        for writer in (client[1], server[1]):
            if not writer.transport.is_closing():
                writer.close()


async def _direction(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, shape: LineShape, *, upstream: bool
) -> None:
    """Read, schedule, deliver: a reader and a delivering task joined by a bounded queue."""
    queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(WINDOW)

    async def deliver() -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()

    delivering = asyncio.create_task(deliver())
    try:
        while chunk := await reader.read(CHUNK):
            passed = shape.admit(chunk) if upstream else chunk
            if passed:
                due = shape.schedule(len(passed), upstream=upstream, now=time.monotonic())
                await queue.put((due, passed))
            if len(passed) < len(chunk):
                await queue.put(None)
                await delivering  # what passed before the reset point still arrives
                raise LineReset
        await queue.put(None)
        await delivering
    finally:
        delivering.cancel()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a middlebox cutting a connection does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def interpose_line(interposer: Interposer, server: Streams, config: LineConfig) -> Streams:
    """Streams that reach `server`, already open, through the impaired line (local backend)."""
    shape = LineShape(config, emulate_loss=True)
    return await interposer.interpose(server, lambda inner, upstream: carry(inner, upstream, shape))


async def start(
    config: LineConfig, *, host: str = "0.0.0.0", events: EventLog | None = None
) -> asyncio.Server:
    """Listen where iptables REDIRECTs the impaired ports (router container)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        try:
            target = original_destination(writer.get_extra_info("socket"))
            server = await open_tcp(*target, timeout=CONNECT_TIMEOUT)
        except (ConnectError, OSError) as error:
            if events is not None:
                events.emit("line-failed", client=str(peer), error=str(error))
            _reset(writer)
            return

        def notify(event: str, **fields: object) -> None:
            if events is not None:
                events.emit(event, client=str(peer), server=f"{target[0]}:{target[1]}", **fields)

        await carry((reader, writer), server, LineShape(config), notify)

    return await asyncio.start_server(handle, host, config.listen_port, backlog=BACKLOG)
