"""A docker lab's networks: subnets free on this host, and the bridges made on them.

Layout (measured on Engine 20.10 with the host's bridge netfilter; see
DESIGN.md): the customer-side networks (a router's inside) are ordinary
bridges, every other lab network is `internal` (no route off the host); a
router container has `NET_ADMIN`, IP forwarding on, its own default route
deleted and iptables rules from `lab.nodes.router.router_rules`; the other
nodes' routes are set by `lab.runtime.docker.commands`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.runtime.subnets import NEVER, choose_subnets, host_taken_networks

if TYPE_CHECKING:
    from lab.scenario.model import Scenario

SUBNET_ATTEMPTS = 5

# Held while choosing and reserving subnets (see `DockerBackend._up_once`).
NETWORK_LOCK = threading.Lock()
# Subnets this process chose for networks it is creating: the engine does not list them
# yet, so labs planned at the same moment would otherwise all choose the same ones.
_RESERVED: set[IPv4Network] = set()


def reserve(subnets: Iterable[IPv4Network]) -> None:
    """Keep `subnets` from other labs of this process until `release` (hold NETWORK_LOCK)."""
    _RESERVED.update(subnets)


def release(subnets: Iterable[IPv4Network]) -> None:
    """The networks on `subnets` exist (the engine lists them) or were given up."""
    with NETWORK_LOCK:
        _RESERVED.difference_update(subnets)


def taken_subnets(client: Any) -> list[IPv4Network]:
    """Host routes, docker networks, and the subnets this process is about to create."""
    return [*host_taken_networks(client), *_RESERVED]


def docker_subnets(scenario: Scenario, client: Any) -> dict[str, IPv4Network]:
    """Subnets for `scenario`'s networks that overlap no host route and no docker network.

    Pinned subnets are kept, after checking them the same way.

    Raises:
        LabError: a pinned subnet collides with something on this host.
    """
    taken = taken_subnets(client)
    pinned = {name: net.subnet for name, net in scenario.networks.items() if net.subnet}
    for name, subnet in pinned.items():
        found = clash(subnet, taken)
        if found is not None:
            raise LabError(f"network {name}: subnet {subnet} {found}; choose another")
    free = iter(choose_subnets(len(scenario.networks) - len(pinned), [*taken, *pinned.values()]))
    return {name: pinned.get(name) or next(free) for name in scenario.networks}


def clash(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> str | None:
    """Why `subnet` cannot be used here (it overlaps a reserved or `taken` one), or None."""
    for other in NEVER:
        if subnet.overlaps(other):
            return f"overlaps {other}, which a lab never uses"
    for other in taken:
        if subnet.overlaps(other):
            return f"overlaps {other}, which this host already uses"
    return None


def create_bridge(
    api: Any,
    name: str,
    subnet: IPv4Network,
    gateway: IPv4Address,
    *,
    internal: bool,
    labels: dict[str, str],
) -> str:
    """Create a bridge network on `subnet` (the host's side at `gateway`); its id.

    Raises:
        docker.errors.APIError: the engine refused (e.g. another network took the subnet).
    """
    created: dict[str, Any] = api.create_network(
        name,
        driver="bridge",
        internal=internal,
        ipam=_ipam(subnet, gateway),
        labels=labels,
        check_duplicate=True,
    )
    network_id: str = created["Id"]
    return network_id


def _ipam(subnet: IPv4Network, gateway: IPv4Address) -> Any:
    from docker.types import IPAMConfig, IPAMPool

    return IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(gateway))])
