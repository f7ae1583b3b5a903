"""A capture of one hop: which router, the flows seen while it ran, and (docker) the pcap
file tcpdump wrote. Choosing the hop is a decision on the topology alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lab.errors import UsageError
from lab.topology import Topology
from lab.wire.flows import Flow

if TYPE_CHECKING:
    from lab.runtime.base import Lab


@dataclass
class Capture:
    """What crossed `router` while the capture ran; filled in when it stops."""

    router: str
    interface: str = ""  # the router's inside interface, where tcpdump listened (docker)
    flows: list[Flow] = field(default_factory=list)
    pcap: bytes | None = None  # the pcap file's bytes (docker); None on the local backend


def routers_of(topology: Topology) -> list[str]:
    """The routers of a topology, by name."""
    return [node.name for node, _spec in topology.routers()]


def choose_hop(topology: Topology, hop: str | None) -> str:
    """The router to capture on: `hop` when given (checked), else the one in front of the
    customer's computer.

    Raises:
        UsageError: the scenario has no router, or `hop` is not one of its routers.
    """
    routers = list(topology.routers())
    names = sorted(node.name for node, _spec in routers)
    if not names:
        raise UsageError(f"scenario {topology.scenario.id!r} has no router to capture on")
    if hop is not None:
        if hop not in names:
            raise UsageError(f"no router {hop!r} in this scenario; its routers: {', '.join(names)}")
        return hop
    for node, spec in routers:
        if spec.inside in topology.client.addresses:
            return node.name
    return names[0]


@asynccontextmanager
async def customer_capture(lab: Lab) -> AsyncIterator[Capture | None]:
    """A capture on the router in front of the customer while the block runs; None (and
    nothing recorded) when the customer's computer sits behind no router."""
    try:
        hop = choose_hop(lab.topology, None)
    except UsageError:
        yield None
        return
    async with lab.capture(hop) as capture:
        yield capture
