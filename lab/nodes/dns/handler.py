"""The lab DNS's every decision, without I/O: `DnsHandler.handle` turns one parsed query into
a reply value (a message, raw bytes, or `None` for silence), faults included, as dnspython's
`tests/nanonameserver.py` does; `handle_wire` adds parsing, size limits and FORMERR for junk,
so the socket layer (`server`) only moves bytes and logs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset

from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.nodes.dns.records import absolute_name, parse_record, synthetic_ns, synthetic_soa
from lab.scenario.vocabulary import DnsFault

Transport = Literal["udp", "tcp"]
HandlerResult = dns.message.Message | bytes | None

MAX_CNAME_CHAIN = 8  # like common resolvers: a longer chain is a loop or a mistake
UDP_DEFAULT_PAYLOAD = 512  # RFC 1035 limit for clients without EDNS
TCP_MAX_MESSAGE = 65535


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
        self.zones: frozenset[dns.name.Name] = frozenset(absolute_name(zone) for zone in zones)
        self.faults: dict[dns.name.Name, DnsFault] = {
            absolute_name(name): DnsFault(fault) for name, fault in (faults or {}).items()
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
            node.setdefault(dns.rdatatype.SOA, synthetic_soa(zone))
            node.setdefault(dns.rdatatype.NS, synthetic_ns(zone))
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
        # Records go out in the zone's order, never shuffled (dnspython's default): a client
        # that does not sort them (Postfix) then tries them in the same order on every run.
        try:
            reply = result.to_wire(max_size=limit, prefer_truncation=True, want_shuffle=False)
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
