"""Addressing: the subnet of each lab network and the address of each node on it. Routers
take .2, .3 ... on both sides, every other node .10, .11 ... in file order, so that a
scenario always resolves to the same addresses."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network

from lab.scenario.model import Scenario
from lab.scenario.network import FIRST_NODE_HOST, ROUTER_HOST, RouterNode
from lab.topology.plan import NetworkPlan

# Where lab subnets come from when nothing else is said: a /24 each, carved in order.
DEFAULT_POOL = IPv4Network("10.213.0.0/16")


def default_subnets(scenario: Scenario) -> dict[str, IPv4Network]:
    """Subnets for the local backend: pinned ones, else consecutive /24s of `DEFAULT_POOL`."""
    pinned = [net.subnet for net in scenario.networks.values() if net.subnet]
    pool = (
        subnet
        for subnet in DEFAULT_POOL.subnets(new_prefix=24)
        if not any(subnet.overlaps(other) for other in pinned)
    )
    return {name: net.subnet or next(pool) for name, net in scenario.networks.items()}


def network_plans(scenario: Scenario, subnets: Mapping[str, IPv4Network]) -> dict[str, NetworkPlan]:
    """Every network on its subnet; those a router leads out of are the customer's side."""
    router_insides = {n.inside for n in scenario.nodes.values() if isinstance(n, RouterNode)}
    return {
        name: NetworkPlan(name, subnets[name], customer_side=name in router_insides)
        for name in scenario.networks
    }


def assign_addresses(
    scenario: Scenario, networks: Mapping[str, NetworkPlan]
) -> dict[str, dict[str, IPv4Address]]:
    """Routers take .2, .3 ... on each side; other nodes .10, .11 ... in file order."""
    next_host = dict.fromkeys(networks, FIRST_NODE_HOST)
    next_router = dict.fromkeys(networks, ROUTER_HOST)
    addresses: dict[str, dict[str, IPv4Address]] = {}
    for name, spec in scenario.nodes.items():
        if isinstance(spec, RouterNode):
            addresses[name] = {}
            for side in (spec.inside, spec.outside):
                addresses[name][side] = networks[side].subnet.network_address + next_router[side]
                next_router[side] += 1
        else:
            network = spec.network
            addresses[name] = {
                network: networks[network].subnet.network_address + next_host[network]
            }
            next_host[network] += 1
    return addresses
