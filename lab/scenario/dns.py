"""The lab DNS in a scenario: its zones and records, and the faults it plays (NXDOMAIN,
SERVFAIL, silence) for a zone or a single name."""

from __future__ import annotations

from typing import Literal

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
from pydantic import Field, field_validator, model_validator

from lab.scenario.base import NodeBase, NodeName, StrictModel
from lab.scenario.names import DnsName, check_dns_name
from lab.scenario.vocabulary import DnsFault

MAX_TTL = 2**31 - 1  # RFC 2181 §8


class DnsRecord(StrictModel):
    """One resource record; `node` stands for that node's address (A records only)."""

    name: str = "@"
    type: Literal["A", "AAAA", "MX", "TXT", "PTR", "CNAME"]
    value: str | None = None
    node: NodeName | None = None
    ttl: int = Field(default=300, ge=0, le=MAX_TTL)

    @field_validator("name")
    @classmethod
    def _owner(cls, name: str) -> str:
        return name if name == "@" else check_dns_name(name)

    @model_validator(mode="after")
    def _value_or_node(self) -> DnsRecord:
        if (self.value is None) == (self.node is None):
            raise ValueError("give exactly one of 'value' or 'node'")
        if self.node is not None and self.type != "A":
            raise ValueError("'node' stands for an address: use it with type A only")
        if self.value is not None:
            _check_rdata(self.type, self.value)
        return self


def _check_rdata(kind: str, value: str) -> None:
    """The value parses as the lab DNS will parse it (`lab.nodes.dns.records.parse_record`):
    TXT literally, the other types in zone-file syntax."""
    if kind == "TXT":
        if not value.isprintable():
            raise ValueError("a TXT value cannot hold a line break or other control character")
        return
    try:
        dns.rdata.from_text(
            dns.rdataclass.IN,
            dns.rdatatype.from_text(kind),
            value,
            origin=dns.name.root,
            relativize=False,
        )
    except (dns.exception.DNSException, ValueError) as error:
        raise ValueError(f"not valid {kind} data ({_RDATA_FORMS[kind]}): {error}") from None


_RDATA_FORMS = {
    "A": "an IPv4 address",
    "AAAA": "an IPv6 address",
    "MX": "'preference host', e.g. '10 mx.example.net.'",
    "PTR": "a host name",
    "CNAME": "a host name",
}


class Zone(StrictModel):
    """A DNS zone served by the lab DNS."""

    records: list[DnsRecord] = []
    fault: DnsFault | None = None


class DnsNode(NodeBase):
    """The lab's authoritative DNS: answers for every zone, NXDOMAIN for the rest."""

    kind: Literal["dns"]
    network: NodeName
    zones: dict[DnsName, Zone] = {}
    faults: dict[DnsName, DnsFault] = Field(default={}, description="Faults for single names.")
    auto_records: bool = Field(
        default=True, description="Publish A and PTR records for every node's hostname."
    )
