"""The lab DNS node: an authoritative server on real UDP and TCP sockets, built on dnspython.

It plays "the internet's DNS" for a lab: every zone the scenario names, and
NXDOMAIN for every other name (a lab never reaches a real resolver).

The split follows dnspython's `tests/nanonameserver.py`: `DnsHandler.handle`
takes a parsed query and returns the reply as a value (a message, raw bytes,
or `None` for silence) with no I/O, so every behaviour, faults included, is
testable without a socket. `DnsHandler.handle_wire` adds parsing, rendering
and FORMERR for junk; the socket layer below it only moves bytes and logs.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.rrset

from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.nodes.events import EventLog
from lab.scenario.model import DnsFault

DNS_PORT = 53
"""The lab port key of `RunningDns.ports`, whatever port was really bound."""

Transport = Literal["udp", "tcp"]
HandlerResult = dns.message.Message | bytes | None

MAX_CNAME_CHAIN = 8  # like common resolvers: a longer chain is a loop or a mistake
UDP_DEFAULT_PAYLOAD = 512  # RFC 1035 limit for clients without EDNS
TCP_MAX_MESSAGE = 65535
BIND_ATTEMPTS = 5  # an ephemeral UDP port may already be taken for TCP: try another

_SOA_TTL = 300
_SOA_TIMERS = (1, 3600, 600, 86400, _SOA_TTL)  # serial, refresh, retry, expire, minimum


# --- data -------------------------------------------------------------------------------------


def _name(text: str) -> dns.name.Name:
    """An absolute name; a missing final dot is forgiven (the lab has no search domains)."""
    return dns.name.from_text(text, origin=dns.name.root)


def parse_record(record: DnsRecordConfig) -> dns.rrset.RRset:
    """One configured record as an RRset; ValueError names the record when its text is bad.

    TXT values are taken as the literal string ("v=spf1 a -all"), split into
    255-byte character-strings as RFC 7208 §3.3 allows, unless they are
    already in zone-file form (starting with a double quote).
    """
    try:
        owner = _name(record.name)
        rdtype = dns.rdatatype.from_text(record.type)
        rdata: dns.rdata.Rdata
        if rdtype == dns.rdatatype.TXT and not record.value.lstrip().startswith('"'):
            raw = record.value.encode()
            chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
            rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, rdtype, chunks)
        else:
            rdata = dns.rdata.from_text(
                dns.rdataclass.IN, rdtype, record.value, origin=dns.name.root, relativize=False
            )
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"dns record {record.name} {record.type} {record.value!r}: {exc}") from exc
    rrset = dns.rrset.RRset(owner, dns.rdataclass.IN, rdtype)
    rrset.add(rdata, record.ttl)
    return rrset


def _synthetic_soa(zone: dns.name.Name) -> dns.rrset.RRset:
    ns = dns.name.from_text("ns", origin=zone).to_text()
    hostmaster = dns.name.from_text("hostmaster", origin=zone).to_text()
    timers = " ".join(str(value) for value in _SOA_TIMERS)
    text = f"{ns} {hostmaster} {timers}"
    return dns.rrset.from_text(zone, _SOA_TTL, "IN", "SOA", text)


def _synthetic_ns(zone: dns.name.Name) -> dns.rrset.RRset:
    ns = dns.name.from_text("ns", origin=zone).to_text()
    return dns.rrset.from_text(zone, _SOA_TTL, "IN", "NS", ns)


def _with_owner(rrset: dns.rrset.RRset, owner: dns.name.Name) -> dns.rrset.RRset:
    """A copy under `owner`: the first answer echoes the question's spelling (0x20-safe)."""
    return dns.rrset.from_rdata_list(owner, rrset.ttl, list(rrset))


@dataclass(frozen=True)
class QueryOutcome:
    """What one incoming datagram or TCP message led to: the bytes to send and the log fields."""

    reply: bytes | None
    qname: str | None
    qtype: str | None
    rcode: str  # "NOERROR", "NXDOMAIN", ... or "silent" / "raw"
    answers: list[str] = field(default_factory=list)
    error: str | None = None

    def event_fields(self) -> dict[str, Any]:
        """The fields of the "query" event (without transport and peer)."""
        fields: dict[str, Any] = {
            "qname": self.qname,
            "qtype": self.qtype,
            "rcode": self.rcode,
            "answers": self.answers,
        }
        if self.error is not None:
            fields["error"] = self.error
        return fields


# --- the handler: every decision, no I/O ------------------------------------------------------


class DnsHandler:
    """Authoritative answers from configured records, with per-name faults.

    `handle` is the override point (as in dnspython's nanonameserver): it
    returns a response message, raw bytes, or None for silence.
    """

    def __init__(
        self,
        zones: Iterable[str],
        records: Iterable[DnsRecordConfig],
        faults: Mapping[str, DnsFault] | None = None,
    ) -> None:
        self.zones: frozenset[dns.name.Name] = frozenset(_name(zone) for zone in zones)
        self.faults: dict[dns.name.Name, DnsFault] = {
            _name(name): DnsFault(fault) for name, fault in (faults or {}).items()
        }
        # name -> type -> rrset; dns.name.Name hashes case-insensitively.
        self.data: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        for record in records:
            rrset = parse_record(record)
            node = self.data.setdefault(rrset.name, {})
            if rrset.rdtype in node:
                for rdata in rrset:
                    node[rrset.rdtype].add(rdata, rrset.ttl)  # keeps the lowest TTL
            else:
                node[rrset.rdtype] = rrset
        for zone in self.zones:
            node = self.data.setdefault(zone, {})
            node.setdefault(dns.rdatatype.SOA, _synthetic_soa(zone))
            node.setdefault(dns.rdatatype.NS, _synthetic_ns(zone))
        # A name "exists" (NODATA rather than NXDOMAIN, RFC 8020) when it or a
        # name below it owns data: include every ancestor (empty non-terminals).
        self.existing: set[dns.name.Name] = set()
        for owner in self.data:
            name = owner
            while name not in self.existing:
                self.existing.add(name)
                if name == dns.name.root:
                    break
                name = name.parent()

    @classmethod
    def from_config(cls, config: DnsConfig) -> DnsHandler:
        """The handler a DNS node runs."""
        return cls(config.zones, config.records, config.faults)

    # lookups

    def fault_for(self, name: dns.name.Name) -> DnsFault | None:
        """The fault configured for `name` or its closest faulty ancestor."""
        while True:
            fault = self.faults.get(name)
            if fault is not None or name == dns.name.root:
                return fault
            name = name.parent()

    def zone_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The closest enclosing zone, if any."""
        while True:
            if name in self.zones:
                return name
            if name == dns.name.root:
                return None
            name = name.parent()

    def _negative_soa(self, name: dns.name.Name) -> list[dns.rrset.RRset]:
        zone = self.zone_for(name)
        if zone is None:
            return []
        soa = self.data[zone][dns.rdatatype.SOA]
        minimum = min(int(getattr(rdata, "minimum", soa.ttl)) for rdata in soa)
        # RFC 2308 §3: negative answers carry the SOA with TTL min(TTL, MINIMUM).
        return [dns.rrset.from_rdata_list(soa.name, min(soa.ttl, minimum), list(soa))]

    # the contract

    def handle(self, request: dns.message.Message) -> HandlerResult:
        """The reply to one parsed query: a message, raw bytes, or None (stay silent)."""
        if request.flags & dns.flags.QR:
            return None  # never answer a response: no reflection loops
        response = dns.message.make_response(request)
        if request.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(request.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = request.question[0]
        if question.rdclass != dns.rdataclass.IN or question.rdtype in (
            dns.rdatatype.AXFR,
            dns.rdatatype.IXFR,
        ):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        return self._answer(response, question.name, question.rdtype)

    def _answer(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: dns.rdatatype.RdataType,
    ) -> HandlerResult:
        name = qname
        seen: set[dns.name.Name] = set()
        response.flags |= dns.flags.AA
        for _ in range(MAX_CNAME_CHAIN + 1):
            # Faults also bite along a CNAME chain, as a broken target zone would.
            fault = self.fault_for(name)
            if fault is DnsFault.TIMEOUT:
                return None
            if fault is DnsFault.SERVFAIL:
                response.flags &= ~dns.flags.AA
                response.answer.clear()
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            node = self.data.get(name, {}) if fault is None else {}
            if node and qtype == dns.rdatatype.ANY:
                response.answer.extend(_with_owner(rrset, name) for rrset in node.values())
                return response
            if qtype in node:
                response.answer.append(_with_owner(node[qtype], name))
                return response
            cname = node.get(dns.rdatatype.CNAME)
            if cname is not None:
                response.answer.append(_with_owner(cname, name))
                seen.add(name)
                target = next(iter(cname))
                assert isinstance(target, dns.rdtypes.ANY.CNAME.CNAME)
                name = target.target
                if name in seen:
                    return response  # a loop: the client sees the chain and gives up
                continue
            if fault is None and name in self.existing:
                response.authority.extend(self._negative_soa(name))  # NODATA
                return response
            response.set_rcode(dns.rcode.NXDOMAIN)
            response.authority.extend(self._negative_soa(name))
            return response
        return response  # chain too long: answer what we followed

    # wire level (still no I/O)

    def handle_wire(self, wire: bytes, transport: Transport) -> QueryOutcome:
        """Parse, call `handle`, render within the transport's size limit; never raises."""
        try:
            request = dns.message.from_wire(wire)
        except Exception as exc:
            return self._malformed(wire, exc)
        qname = qtype = None
        if request.question:  # (an RRset with no rdatas is falsy: test the list)
            qname = request.question[0].name.to_text()
            qtype = dns.rdatatype.to_text(request.question[0].rdtype)
        error: str | None = None
        try:
            result = self.handle(request)
        except Exception as exc:  # a bug in handle() answers SERVFAIL, as nanonameserver does
            error = f"handler failed: {exc!r}"
            result = dns.message.make_response(request)
            result.set_rcode(dns.rcode.SERVFAIL)
        if result is None:
            return QueryOutcome(None, qname, qtype, "silent", error=error)
        if isinstance(result, bytes):
            return QueryOutcome(result, qname, qtype, "raw", error=error)
        if transport == "tcp":
            limit = TCP_MAX_MESSAGE
        elif request.edns >= 0:
            limit = max(UDP_DEFAULT_PAYLOAD, request.payload)
        else:
            limit = UDP_DEFAULT_PAYLOAD
        # Too big for UDP: truncate and set TC so that the client retries over TCP.
        try:
            reply = result.to_wire(max_size=limit, prefer_truncation=True)
        except Exception as exc:
            error = f"cannot render the reply: {exc!r}"
            result = dns.message.make_response(request)
            result.set_rcode(dns.rcode.SERVFAIL)
            reply = result.to_wire()
        answers = [line for rrset in result.answer for line in rrset.to_text().splitlines()]
        return QueryOutcome(
            reply, qname, qtype, dns.rcode.to_text(result.rcode()), answers, error=error
        )

    @staticmethod
    def _malformed(wire: bytes, exc: Exception) -> QueryOutcome:
        """FORMERR when the query id can be read and the junk is not itself a response."""
        error = f"malformed query ({len(wire)} bytes): {exc}"
        if len(wire) < 2 or (len(wire) > 2 and wire[2] & 0x80):
            return QueryOutcome(None, None, None, "silent", error=error)
        qname = qtype = None
        try:
            parsed = dns.message.from_wire(wire, question_only=True)
            response = dns.message.make_response(parsed)
            if parsed.question:
                qname = parsed.question[0].name.to_text()
                qtype = dns.rdatatype.to_text(parsed.question[0].rdtype)
        except Exception:
            # Header only: echo the id (and the opcode when the byte is there).
            response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
            response.flags = dns.flags.QR
            if len(wire) > 2:
                response.set_opcode(dns.opcode.from_flags(wire[2] << 8))
        response.set_rcode(dns.rcode.FORMERR)
        return QueryOutcome(response.to_wire(), qname, qtype, "FORMERR", error=error)


# --- the socket layer: a thin runner ----------------------------------------------------------


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
    log = EventLog(config.data_dir, config.name)
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
