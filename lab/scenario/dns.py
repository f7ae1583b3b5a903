"""The lab DNS in a scenario: its zones and records, and the faults it plays (NXDOMAIN,
SERVFAIL, silence) for a zone or a single name."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from lab.scenario.base import NodeBase, NodeName, StrictModel
from lab.scenario.vocabulary import DnsFault


class DnsRecord(StrictModel):
    """One resource record; `node` stands for that node's address (A records only)."""

    name: str = "@"
    type: Literal["A", "AAAA", "MX", "TXT", "PTR", "CNAME"]
    value: str | None = None
    node: NodeName | None = None
    ttl: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _value_or_node(self) -> DnsRecord:
        if (self.value is None) == (self.node is None):
            raise ValueError("give exactly one of 'value' or 'node'")
        if self.node is not None and self.type != "A":
            raise ValueError("'node' stands for an address: use it with type A only")
        return self


class Zone(StrictModel):
    """A DNS zone served by the lab DNS."""

    records: list[DnsRecord] = []
    fault: DnsFault | None = None


class DnsNode(NodeBase):
    """The lab's authoritative DNS: answers for every zone, NXDOMAIN for the rest."""

    kind: Literal["dns"]
    network: NodeName
    zones: dict[str, Zone] = {}
    faults: dict[str, DnsFault] = Field(default={}, description="Faults for single names.")
    auto_records: bool = Field(
        default=True, description="Publish A and PTR records for every node's hostname."
    )
