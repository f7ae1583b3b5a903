"""The network side of a scenario: layer-2 segments and the router (the customer's ISP)
that joins two of them, with its per-port policy, outage and SMTP inspection."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field, model_validator

from lab.scenario.base import DnsblZone, NodeBase, NodeName, Port, StrictModel
from lab.scenario.vocabulary import PortPolicy


class Network(StrictModel):
    """A layer-2 segment: the customer's LAN, the internet, a provider's LAN."""

    description: str = ""
    subnet: IPv4Network | None = Field(
        default=None,
        description="Pin a subnet; by default one is chosen that overlaps no host route.",
    )


class Inspection(StrictModel):
    """The router's SMTP inspection ("fixup protocol smtp" on a Cisco PIX, "inspect esmtp"
    on an ASA): a middlebox that rewrites the SMTP session passing through it."""

    ports: list[Port] = Field(default=[25], min_length=1)
    mangle_banner: bool = Field(
        default=True, description="The 220 greeting's text is replaced by asterisks."
    )
    strip_starttls: bool = Field(
        default=True,
        description="STARTTLS is masked out of EHLO replies (250-XXXXXXXA) and a client's "
        "STARTTLS command reaches the server as XXXXXXXX.",
    )


class RouterNode(NodeBase):
    """The customer's ISP: joins the inside network to the outside one."""

    kind: Literal["router"]
    inside: NodeName
    outside: NodeName
    ports: dict[Port, PortPolicy] = Field(
        default={}, description="Policy per destination TCP port, for traffic going outside."
    )
    default: PortPolicy = PortPolicy.ALLOW
    outage: bool = Field(default=False, description="Nothing gets through at all.")
    inspection: Inspection | None = Field(
        default=None, description="SMTP inspection of connections going outside."
    )
    listed_on: list[DnsblZone] = Field(
        default=[],
        description="DNSBL zones that list the router's outside address (the customer's "
        "public IP): the lab DNS answers 127.0.0.2 for it there.",
    )

    @model_validator(mode="after")
    def _two_networks(self) -> RouterNode:
        if self.inside == self.outside:
            raise ValueError("'inside' and 'outside' must be different networks")
        return self
