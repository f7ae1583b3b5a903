"""The local backend's emulated network: what a connection from one node of a topology
meets (`path_verdict`), made real on 127.0.0.1.

- allow: connect to the node's real port and send a PROXY v1 header so the
  server sees the emulated peer address (after NAT, as through the ISP);
- drop: connect to a listener whose accept queue is full, so the kernel
  drops the SYN and the client waits out its own connect timeout;
- reject: connect to a bound socket that does not listen: a real RST;
- unreachable: the error the kernel gives for no route (EHOSTUNREACH), or for a router's
  ICMP network unreachable (ENETUNREACH, an ISP outage that says so).

Every attempt that crosses a router is recorded (`lab.wire.records`), for `capture`.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from lab.net import (
    ConnectRefused,
    ConnectTimeout,
    HostUnreachable,
    NetworkUnreachable,
    Streams,
    open_tcp,
)
from lab.nodes.inspection import Interposer
from lab.nodes.line import interpose_line
from lab.topology import Action, Topology, inspection_for, line_for, path_verdict
from lab.topology.paths import Verdict
from lab.wire.flows import Outcome
from lab.wire.records import WireLog, WireRecord

LOOPBACK = "127.0.0.1"
_ATTEMPT_OUTCOME = {
    Action.ALLOW: Outcome.ESTABLISHED,
    Action.DROP: Outcome.UNANSWERED,
    Action.REJECT: Outcome.REFUSED,
    Action.UNREACHABLE: Outcome.UNREACHABLE,
    Action.NET_UNREACHABLE: Outcome.UNREACHABLE,
}


class Blackhole:
    """A listener whose accept queue is kept full: the kernel drops every further SYN."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(0)  # backlog 0: one queued connection fills the queue
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.socket()
        self._filler.setblocking(False)
        self._filler.connect_ex((LOOPBACK, self.port))

    def close(self) -> None:
        """Release both sockets."""
        self._filler.close()
        self._listener.close()


class ClosedPort:
    """A bound socket that never listens: connecting to it is refused by the kernel."""

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind((LOOPBACK, 0))
        self.port: int = self._socket.getsockname()[1]

    def close(self) -> None:
        """Release the port."""
        self._socket.close()


@dataclass
class EmulatedNetwork:
    """Where each (lab address, port) really listens, and the kernel tricks for faults."""

    topology: Topology
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    proxied: set[tuple[str, int]] = field(default_factory=set)
    blackhole: Blackhole = field(default_factory=Blackhole)
    closed: ClosedPort = field(default_factory=ClosedPort)
    inspector: Interposer = field(default_factory=Interposer)  # inspections and impaired lines
    wire: WireLog = field(default_factory=WireLog)
    _source_ports: Iterator[int] = field(
        default_factory=lambda: itertools.cycle(range(40000, 60000))
    )

    def connector_for(self, node: str) -> EmulatedConnector:
        """A connector that opens connections from `node`'s place in the topology."""
        return EmulatedConnector(self, node)

    def record(self, source: str, host: str, port: int, verdict: Verdict) -> WireRecord | None:
        """Note a connection attempt that crosses a router (None when it crosses none)."""
        if verdict.by is None:
            return None
        inside = next(
            spec.inside for node, spec in self.topology.routers() if node.name == verdict.by
        )
        client = self.topology.nodes[source].addresses[inside]
        outcome = _ATTEMPT_OUTCOME[verdict.action]
        return self.wire.add(
            WireRecord(verdict.by, client, IPv4Address(host), port, outcome, verdict.reason)
        )

    def close(self) -> None:
        """Release the fault sockets; stop inspections and impaired lines still running."""
        self.blackhole.close()
        self.closed.close()
        self.inspector.close()


@dataclass
class EmulatedConnector:
    """`lab.net.Connector` for one node of an emulated network."""

    network: EmulatedNetwork
    source: str

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect as the topology says: allowed, dropped, rejected or unreachable."""
        verdict = path_verdict(self.network.topology, self.source, host, port)
        record = self.network.record(self.source, host, port, verdict)
        outcome: Outcome | None = None
        try:
            return await self._connect(host, port, verdict, timeout)
        except ConnectRefused:
            outcome = Outcome.REFUSED  # allowed by the router, but nothing listens
            raise
        finally:
            if record is not None:
                record.finish(outcome)

    async def _connect(self, host: str, port: int, verdict: Verdict, timeout: float) -> Streams:
        if verdict.action is Action.DROP:
            with contextlib.suppress(ConnectTimeout):
                await open_tcp(LOOPBACK, self.network.blackhole.port, timeout=timeout)
            raise ConnectTimeout(110, f"connect to {host}:{port} timed out after {timeout:g} s")
        if verdict.action is Action.UNREACHABLE:
            raise HostUnreachable(113, f"no route to {host}:{port} ({verdict.reason})")
        if verdict.action is Action.NET_UNREACHABLE:
            text = f"network unreachable for {host}:{port} ({verdict.reason})"
            raise NetworkUnreachable(errno.ENETUNREACH, text)
        real_port = self.network.ports.get((host, port))
        if verdict.action is Action.REJECT or real_port is None:
            with contextlib.suppress(ConnectRefused):
                await open_tcp(LOOPBACK, self.network.closed.port, timeout=timeout)
            raise ConnectRefused(111, f"connection to {host}:{port} refused")
        reader, writer = await open_tcp(LOOPBACK, real_port, timeout=timeout)
        if (host, port) in self.network.proxied:
            source_port = next(self.network._source_ports)
            writer.write(f"PROXY TCP4 {verdict.source} {host} {source_port} {port}\r\n".encode())
        inspection = inspection_for(self.network.topology, verdict, port)
        if inspection is not None:
            return await self.network.inspector.wrap((reader, writer), inspection)
        line = line_for(self.network.topology, verdict, port)
        if line is not None and (line.shapes_bytes or line.loss):
            return await interpose_line(self.network.inspector, (reader, writer), line)
        return reader, writer
