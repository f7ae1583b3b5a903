"""Path decisions without I/O: what happens to a TCP connection from one node to an address
and port (same network, routed and masqueraded by a router, dropped, refused, unreachable),
and which SMTP inspection and line impairment it passes through. The local backend
emulates these verdicts; the docker router enforces the same with iptables."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address

from lab.nodes.config import InspectionConfig, LineConfig, RouterConfig
from lab.scenario.vocabulary import OUTAGE_UNREACHABLE, PortPolicy
from lab.topology.plan import Topology


class Action(StrEnum):
    """What happens to a new TCP connection."""

    ALLOW = "allow"
    DROP = "drop"
    REJECT = "reject"
    UNREACHABLE = "unreachable"  # no route to the host
    NET_UNREACHABLE = "net-unreachable"  # a router answers ICMP network unreachable


@dataclass(frozen=True)
class Verdict:
    """The fate of a connection from a node to an address and port, and who did it."""

    action: Action
    source: IPv4Address | None  # the address the server sees (after NAT)
    target: str | None  # the node that would answer
    by: str | None  # the router that decided, or None
    reason: str


def path_verdict(topology: Topology, source: str, address: str, port: int) -> Verdict:
    """What happens when `source` opens a TCP connection to `address:port`.

    Same network: direct. Across a router: only from its inside to its
    outside, subject to its outage flag and port policy, with the source
    rewritten to the router's outside address (NAT). Nothing routes inward.
    """
    origin = topology.nodes[source]
    try:
        destination = IPv4Address(address)
    except ValueError:
        return Verdict(Action.UNREACHABLE, None, None, None, f"{address} is not an IPv4 address")
    found = topology.node_at(destination)
    if found is None:
        return Verdict(Action.UNREACHABLE, None, None, None, f"no host has the address {address}")
    target, target_network = found
    if not target.running:
        return Verdict(Action.DROP, None, target.name, None, f"{target.name} is switched off")
    refused_or_allowed = Action.ALLOW if port in target.tcp_ports else Action.REJECT
    why_closed = f"nothing listens on {target.name}:{port}"
    if target_network in origin.addresses:
        source_address = origin.addresses[target_network]
        reason = "same network" if refused_or_allowed is Action.ALLOW else why_closed
        return Verdict(refused_or_allowed, source_address, target.name, None, reason)
    for router, spec in topology.routers():
        if spec.inside in origin.addresses and spec.outside == target_network:
            nat = router.addresses[spec.outside]
            if spec.outage == OUTAGE_UNREACHABLE:
                reason = "ISP outage: network unreachable"
                return Verdict(Action.NET_UNREACHABLE, nat, target.name, router.name, reason)
            if spec.outage:
                return Verdict(Action.DROP, nat, target.name, router.name, "ISP outage")
            policy = spec.ports.get(port, spec.default)
            if policy is PortPolicy.DROP:
                reason = f"{router.name} drops port {port}"
                return Verdict(Action.DROP, nat, target.name, router.name, reason)
            if policy is PortPolicy.REJECT:
                reason = f"{router.name} rejects port {port}"
                return Verdict(Action.REJECT, nat, target.name, router.name, reason)
            reason = (
                f"routed by {router.name}" if refused_or_allowed is Action.ALLOW else why_closed
            )
            return Verdict(refused_or_allowed, nat, target.name, router.name, reason)
    return Verdict(Action.UNREACHABLE, None, target.name, None, f"no route to {target_network}")


def inspection_for(topology: Topology, verdict: Verdict, port: int) -> InspectionConfig | None:
    """The SMTP inspection a connection passes through: that of the router which routed it,
    when the router inspects `port`; None for everything else."""
    if verdict.action is not Action.ALLOW or verdict.by is None:
        return None
    config = topology.nodes[verdict.by].config
    if not isinstance(config, RouterConfig) or config.inspection is None:
        return None
    return config.inspection if port in config.inspection.ports else None


def line_for(topology: Topology, verdict: Verdict, port: int) -> LineConfig | None:
    """The line impairment a connection passes through: that of the router which routed
    it, when the router impairs `port`; None for everything else."""
    if verdict.action is not Action.ALLOW or verdict.by is None:
        return None
    config = topology.nodes[verdict.by].config
    if not isinstance(config, RouterConfig) or config.line is None:
        return None
    return config.line if config.line.covers(port) else None
