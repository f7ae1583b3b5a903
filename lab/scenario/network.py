"""The network side of a scenario: layer-2 segments and the router (the customer's ISP)
that joins two of them, with its per-port policy, outage and SMTP inspection."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Literal

from pydantic import Field, field_validator, model_validator

from lab.scenario.base import DnsblZone, NodeBase, NodeName, Port, StrictModel
from lab.scenario.names import Prose
from lab.scenario.vocabulary import PortPolicy
from lab.units import Duration, Rate, Size

# Addressing on every lab network (`lab.topology.addressing`): .1 is the bridge on the docker
# host, routers take .2 to .9, every other node .10, .11 ... in file order.
ROUTER_HOST = 2
FIRST_NODE_HOST = 10
MAX_ROUTERS_PER_NETWORK = FIRST_NODE_HOST - ROUTER_HOST
# Ranges no lab network can sit on: they mean something else to every host.
_SPECIAL = {
    IPv4Network("0.0.0.0/8"): "'this network'",
    IPv4Network("127.0.0.0/8"): "loopback",
    IPv4Network("169.254.0.0/16"): "link-local",
    IPv4Network("224.0.0.0/4"): "multicast",
    IPv4Network("240.0.0.0/4"): "reserved",
}


class Network(StrictModel):
    """A layer-2 segment: the customer's LAN, the internet, a provider's LAN."""

    description: Prose = ""
    subnet: IPv4Network | None = Field(
        default=None,
        description="Pin a subnet; by default one is chosen that overlaps no host route.",
    )

    @field_validator("subnet", mode="before")
    @classmethod
    def _written_as_text(cls, subnet: object) -> object:
        # ipaddress would take True as 0.0.0.1/32 and 167772160 as 10.0.0.0/32
        if subnet is not None and not isinstance(subnet, str):
            raise ValueError("write a subnet as address/prefix, e.g. 10.0.5.0/24")
        return subnet

    @field_validator("subnet")
    @classmethod
    def _usable(cls, subnet: IPv4Network | None) -> IPv4Network | None:
        if subnet is None:
            return None
        if subnet.prefixlen < 8:
            raise ValueError(f"a lab network is at most a /8, not a /{subnet.prefixlen}")
        if subnet.num_addresses < FIRST_NODE_HOST + 2:
            raise ValueError(
                f"a /{subnet.prefixlen} is too small: nodes start at .{FIRST_NODE_HOST} "
                "(a /28 holds 5 nodes)"
            )
        for special, kind in _SPECIAL.items():
            if subnet.overlaps(special):
                raise ValueError(f"overlaps {special}, the {kind} range; pin a private one")
        return subnet


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


class LineImpairment(StrictModel):
    """What the customer's line itself does to TCP connections through the router: a
    satellite link's delay, a thin uplink, lost packets, or a middlebox that resets long
    transfers. Delay, bandwidth and resets act on the connection's bytes (a proxy in the
    router); loss drops real packets where there are packets (docker)."""

    latency: Duration = Field(
        default=0.0, le=10.0, description="REAL seconds added to each direction (one way)."
    )
    bandwidth: Rate | None = Field(
        default=None, description="Cap each direction at this rate (tc's words: 64kbit)."
    )
    loss: float = Field(
        default=0.0, ge=0.0, le=0.5, description="Share of packets lost, 0 to 0.5 (0.02: 2 %)."
    )
    reset_after: Size | None = Field(
        default=None,
        gt=0,
        description="Reset the connection once the client has sent this many bytes "
        "(a middlebox that cuts long transfers).",
    )
    ports: list[Port] = Field(default=[], description="Only these ports; empty means all.")


class RouterNode(NodeBase):
    """The customer's ISP: joins the inside network to the outside one."""

    kind: Literal["router"]
    inside: NodeName
    outside: NodeName
    ports: dict[Port, PortPolicy] = Field(
        default={}, description="Policy per destination TCP port, for traffic going outside."
    )
    default: PortPolicy = PortPolicy.ALLOW
    outage: bool | Literal["unreachable"] = Field(
        default=False,
        description="Nothing gets through at all: true drops every packet (timeouts); "
        "'unreachable' answers each with ICMP network unreachable (the ISP's uplink is down).",
    )
    inspection: Inspection | None = Field(
        default=None, description="SMTP inspection of connections going outside."
    )
    impairment: LineImpairment | None = Field(
        default=None, description="Delay, bandwidth, loss or resets on the line."
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
        if self.inspection is not None and self.impairment is not None:
            line_ports = set(self.impairment.ports)
            both = (
                set(self.inspection.ports)
                if not line_ports
                else (line_ports & set(self.inspection.ports))
            )
            if both:
                shared = ", ".join(str(port) for port in sorted(both))
                raise ValueError(
                    f"port {shared}: a router cannot both inspect and impair a port "
                    "(list the impaired ports under impairment.ports)"
                )
        return self
