"""The lab DNS's records as dnspython objects: configured records parsed into RRsets (TXT
values taken literally), and the SOA and NS records synthesized for every zone served."""

from __future__ import annotations

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

from lab.nodes.config import DnsRecordConfig

_SOA_TTL = 300
_SOA_TIMERS = (1, 3600, 600, 86400, _SOA_TTL)  # serial, refresh, retry, expire, minimum


def absolute_name(text: str) -> dns.name.Name:
    """An absolute name; a missing final dot is forgiven (the lab has no search domains)."""
    return dns.name.from_text(text, origin=dns.name.root)


def parse_record(record: DnsRecordConfig) -> dns.rrset.RRset:
    """One configured record as an RRset; ValueError names the record when its text is bad.

    TXT values are taken as the literal string ("v=spf1 a -all"), split into
    255-byte character-strings as RFC 7208 §3.3 allows, unless they are
    already in zone-file form (starting with a double quote).
    """
    try:
        owner = absolute_name(record.name)
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


def synthetic_soa(zone: dns.name.Name) -> dns.rrset.RRset:
    """The SOA of a zone served without one: ns.<zone>, hostmaster.<zone>, fixed timers."""
    ns = dns.name.from_text("ns", origin=zone).to_text()
    hostmaster = dns.name.from_text("hostmaster", origin=zone).to_text()
    timers = " ".join(str(value) for value in _SOA_TIMERS)
    text = f"{ns} {hostmaster} {timers}"
    return dns.rrset.from_text(zone, _SOA_TTL, "IN", "SOA", text)


def synthetic_ns(zone: dns.name.Name) -> dns.rrset.RRset:
    """The NS of a zone served without one: ns.<zone>."""
    ns = dns.name.from_text("ns", origin=zone).to_text()
    return dns.rrset.from_text(zone, _SOA_TTL, "IN", "NS", ns)
