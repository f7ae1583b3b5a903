"""The lab DNS's socket layer: a thin runner that binds UDP and TCP on the same port, frames
TCP messages (RFC 1035 §4.2.2), hands every message to `DnsHandler.handle_wire`, sends what
it returns and logs a "query" event for each; `start` and `serve` run a configured node."""

from __future__ import annotations

import asyncio
import errno
from typing import Any, cast

from lab.nodes.config import DnsConfig
from lab.nodes.dns.handler import DnsHandler, Transport
from lab.nodes.events import EventLog

DNS_PORT = 53
"""The lab port key of `RunningDns.ports`, whatever port was really bound."""

BIND_ATTEMPTS = 5  # an ephemeral UDP port may already be taken for TCP: try another


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


class _Dispatcher:
    """Calls the handler and records the event; shared by both transports."""

    def __init__(self, handler: DnsHandler, log: EventLog) -> None:
        self.handler = handler
        self.log = log

    def process(self, wire: bytes, transport: Transport, peer: Any) -> bytes | None:
        outcome = self.handler.handle_wire(wire, transport)
        self.log.emit("query", **outcome.event_fields(), transport=transport, peer=_peer_text(peer))
        return outcome.reply


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, dispatcher: _Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass DatagramTransport.
        self.transport = cast("asyncio.DatagramTransport", transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        reply = self.dispatcher.process(data, "udp", addr)
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP unreachable from a client that went away: nothing to do

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _TcpProtocol(asyncio.Protocol):
    """RFC 1035 §4.2.2 framing: each message preceded by its 2-byte length."""

    def __init__(self, dispatcher: _Dispatcher, connections: set[_TcpProtocol]) -> None:
        self.dispatcher = dispatcher
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.buffer = bytearray()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.connections.add(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while len(self.buffer) >= 2:
            length = int.from_bytes(self.buffer[:2], "big")
            if len(self.buffer) < 2 + length:
                break
            wire = bytes(self.buffer[2 : 2 + length])
            del self.buffer[: 2 + length]
            reply = self.dispatcher.process(wire, "tcp", self.peer)
            if reply is not None and self.transport is not None:
                self.transport.write(len(reply).to_bytes(2, "big") + reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        if not self.closed.done():
            self.closed.set_result(None)


class RunningDns:
    """A started DNS node (satisfies `lab.nodes.base.RunningNode`)."""

    def __init__(
        self,
        handler: DnsHandler,
        log: EventLog,
        udp: _UdpProtocol,
        tcp: asyncio.Server,
        connections: set[_TcpProtocol],
        host: str,
        port: int,
    ) -> None:
        self.handler = handler
        self.log = log
        self.host = host
        self.port = port
        self._udp = udp
        self._tcp = tcp
        self._connections = connections
        self._stopped = False

    @property
    def ports(self) -> dict[int, int]:
        """{53: the port bound for both UDP and TCP}."""
        return {DNS_PORT: self.port}

    async def stop(self) -> None:
        """Close both listeners and every open TCP connection, then the event log."""
        if self._stopped:
            return
        self._stopped = True
        self._tcp.close()
        if self._udp.transport is not None:
            self._udp.transport.close()
        connections = list(self._connections)
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        # Wait for the transports to really close their sockets (no ResourceWarning).
        await asyncio.gather(self._udp.closed, *(connection.closed for connection in connections))
        await self._tcp.wait_closed()
        self.log.close()


async def _bind(
    host: str, port: int, dispatcher: _Dispatcher, connections: set[_TcpProtocol]
) -> tuple[_UdpProtocol, asyncio.Server, int]:
    """UDP first (the kernel picks a free port when asked for 0), then TCP on the same number."""
    loop = asyncio.get_running_loop()
    attempts = BIND_ATTEMPTS if port == 0 else 1
    for attempt in range(attempts):
        udp_transport, udp = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(dispatcher), local_addr=(host, port)
        )
        try:
            bound = int(udp_transport.get_extra_info("sockname")[1])
            tcp = await loop.create_server(
                lambda: _TcpProtocol(dispatcher, connections), host, bound, backlog=1024
            )
        except BaseException as exc:
            udp_transport.close()
            await udp.closed
            retry = isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE
            if not retry or attempt == attempts - 1:
                raise
            continue
        return udp, tcp, bound
    raise AssertionError("unreachable")  # pragma: no cover


async def start(config: DnsConfig) -> RunningDns:
    """Bind UDP and TCP and return once both listen; bad records raise ValueError first."""
    handler = DnsHandler.from_config(config)
    log = EventLog(config.data_dir, config.name, max_bytes=config.events_max_bytes)
    dispatcher = _Dispatcher(handler, log)
    connections: set[_TcpProtocol] = set()
    try:
        udp, tcp, port = await _bind(config.listen_host, config.port, dispatcher, connections)
    except BaseException:
        log.close()
        raise
    log.emit("ready", host=config.listen_host, port=port, zones=sorted(config.zones))
    return RunningDns(handler, log, udp, tcp, connections, config.listen_host, port)


async def serve(config: DnsConfig) -> None:
    """Run the DNS node until cancelled (`python -m lab.nodes dns config.json`)."""
    running = await start(config)
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
