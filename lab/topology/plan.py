"""The resolved topology, as frozen data: each network's subnet, each node's addresses,
hostname, listening ports and the config its program reads. `lab.topology.build.resolve`
makes one from a scenario; backends only add runtime facts (bind ports, directories)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

from lab.nodes.config import AnyNodeConfig
from lab.scenario.model import Scenario
from lab.scenario.network import RouterNode


@dataclass(frozen=True)
class NetworkPlan:
    """One lab network."""

    name: str
    subnet: IPv4Network
    # The network a router leads out of is the customer's side; the others are internal.
    customer_side: bool

    @property
    def gateway(self) -> IPv4Address:
        """The bridge address on the host (docker) side."""
        return self.subnet.network_address + 1


@dataclass(frozen=True)
class NodePlan:
    """One node: its kind, where it sits, and the config its program reads."""

    name: str
    kind: str
    addresses: Mapping[str, IPv4Address]
    hostname: str | None
    config: AnyNodeConfig
    tcp_ports: tuple[int, ...]
    running: bool = True  # False: the host is switched off (not started at all)
    # Lab seconds after the lab's start during which the (running) host answers nothing:
    # a server that comes back (`down: {until: ...}`); None when it is on from the start.
    back_after: float | None = None

    @property
    def address(self) -> IPv4Address:
        """The node's first address (routers have one per network)."""
        return next(iter(self.addresses.values()))


@dataclass(frozen=True)
class Topology:
    """A resolved scenario."""

    scenario: Scenario
    networks: Mapping[str, NetworkPlan]
    nodes: Mapping[str, NodePlan]

    @property
    def client(self) -> NodePlan:
        """The customer's computer."""
        return self.nodes[self.scenario.client[0]]

    @property
    def dns(self) -> NodePlan | None:
        """The lab DNS node, if the scenario has one."""
        return next((node for node in self.nodes.values() if node.kind == "dns"), None)

    def node_at(self, address: IPv4Address) -> tuple[NodePlan, str] | None:
        """The node holding `address` and the network it is on."""
        for node in self.nodes.values():
            for network, node_address in node.addresses.items():
                if node_address == address:
                    return node, network
        return None

    def routers(self) -> Iterator[tuple[NodePlan, RouterNode]]:
        """Every router node with its scenario definition."""
        for node in self.nodes.values():
            spec = self.scenario.nodes[node.name]
            if isinstance(spec, RouterNode):
                yield node, spec
