"""Choose lab subnets that collide with nothing on this host.

Docker accepts an explicit subnet that overlaps the host's own LAN and then
silently breaks the host's networking, so every subnet the docker backend
creates comes from here: `host_taken_networks` reads the kernel's routes and
every docker network's IPAM config, `choose_subnets` (pure, table-tested)
picks /24s that overlap none of them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterable, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network, ip_network
from typing import Any

# Carved in this order. 10.213/16 first (the local backend's pool, so addresses look
# alike in both backends), then other private ranges that home routers rarely use.
DEFAULT_CANDIDATES: tuple[IPv4Network, ...] = (
    IPv4Network("10.213.0.0/16"),
    IPv4Network("172.30.0.0/16"),
    IPv4Network("10.198.0.0/16"),
    IPv4Network("172.29.0.0/16"),
    IPv4Network("10.177.0.0/16"),
)

# Never used even when free: on some CI hosts the documentation ranges are real networks,
# and a lab address that looks like "the internet" in a log must never be mistaken for one.
NEVER: tuple[IPv4Network, ...] = (
    IPv4Network("192.0.2.0/24"),
    IPv4Network("198.51.100.0/24"),
    IPv4Network("203.0.113.0/24"),
    IPv4Network("127.0.0.0/8"),
    IPv4Network("169.254.0.0/16"),
    IPv4Network("0.0.0.0/8"),
    IPv4Network("224.0.0.0/3"),
)


class NoFreeSubnet(RuntimeError):
    """Every candidate subnet overlaps something the host already uses."""


def choose_subnets(
    count: int,
    taken: Iterable[IPv4Network],
    candidates: Sequence[IPv4Network] = DEFAULT_CANDIDATES,
    prefix: int = 24,
) -> list[IPv4Network]:
    """`count` distinct subnets of length `prefix` carved from `candidates` in order.

    A subnet is skipped when it overlaps anything in `taken` or `NEVER`.

    Raises:
        NoFreeSubnet: fewer than `count` free subnets exist in the candidates.
    """
    blocked = [*taken, *NEVER]
    chosen: list[IPv4Network] = []
    if count <= 0:
        return chosen
    for pool in candidates:
        for subnet in _carve(pool, prefix):
            if any(subnet.overlaps(other) for other in blocked):
                continue
            chosen.append(subnet)
            blocked.append(subnet)
            if len(chosen) == count:
                return chosen
    raise NoFreeSubnet(
        f"only {len(chosen)} of {count} free /{prefix} subnets in "
        + ", ".join(str(pool) for pool in candidates)
    )


def _carve(pool: IPv4Network, prefix: int) -> Iterator[IPv4Network]:
    if pool.prefixlen > prefix:
        return
    yield from pool.subnets(new_prefix=prefix)


# --- what the host uses ---------------------------------------------------------------------


# Route types that `ip route` prints before the destination.
_ROUTE_TYPES = frozenset(
    {"unicast", "local", "broadcast", "multicast", "anycast", "unreachable", "blackhole"}
    | {"prohibit", "throw", "nat"}
)
# Shorter routes are default routes in disguise (VPNs install 0.0.0.0/1 + 128.0.0.0/1):
# treating them as taken would leave nothing free, and a /24 is more specific anyway.
_CATCH_ALL_PREFIX = 8


def parse_routes(routes: Sequence[dict[str, Any]]) -> list[IPv4Network]:
    """Networks in `ip -j -4 route` output: every destination, plus the gateways' /24s.

    Default routes are left out (or nothing would be free), as are other
    catch-all routes shorter than /8; their gateways' /24s are kept, because a
    gateway reached through an `onlink` route has no network route of its own.
    """
    networks: list[IPv4Network] = []
    for route in routes:
        gateway = route.get("gateway")
        if gateway:
            with contextlib.suppress(ValueError):
                networks.append(IPv4Network(f"{IPv4Address(gateway)}/24", strict=False))
        destination = route.get("dst", "")
        if destination == "default":
            continue
        try:
            network = ip_network(destination, strict=False)
        except ValueError:
            continue
        if isinstance(network, IPv4Network) and network.prefixlen >= _CATCH_ALL_PREFIX:
            networks.append(network)
    return networks


def parse_route_text(text: str) -> list[IPv4Network]:
    """Like `parse_routes`, for the text form of `ip -4 route` (old iproute2 without -j)."""
    routes: list[dict[str, Any]] = []
    for line in text.splitlines():
        words = line.split()
        if words and words[0] in _ROUTE_TYPES:
            words = words[1:]
        if not words:
            continue
        route: dict[str, Any] = {"dst": words[0]}
        if "via" in words[:-1]:
            route["gateway"] = words[words.index("via") + 1]
        routes.append(route)
    return parse_routes(routes)


def route_table_networks() -> list[IPv4Network]:
    """Every IPv4 route of the host (all tables), as networks."""
    # `table all` includes the local table: the host's own addresses and broadcasts.
    command = ["ip", "-4", "route", "show", "table", "all"]
    try:
        result = subprocess.run(
            ["ip", "-j", *command[1:]], capture_output=True, text=True, check=True
        )
        return parse_routes(json.loads(result.stdout or "[]"))
    except (subprocess.CalledProcessError, json.JSONDecodeError):
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return parse_route_text(result.stdout)


def docker_networks(client: Any) -> list[IPv4Network]:
    """The IPv4 subnets of every docker network, from their IPAM config."""
    networks: list[IPv4Network] = []
    for network in client.api.networks():
        configs = (network.get("IPAM") or {}).get("Config") or []
        for config in configs:
            subnet = config.get("Subnet")
            if not subnet:
                continue
            try:
                parsed = ip_network(subnet, strict=False)
            except ValueError:
                continue
            if isinstance(parsed, IPv4Network):
                networks.append(parsed)
    return networks


def host_taken_networks(client: Any | None = None) -> list[IPv4Network]:
    """Everything a lab subnet must not overlap: host routes and docker networks' subnets.

    Args:
        client: a `docker.DockerClient`; without one only routes are read.
    """
    taken = route_table_networks()
    if client is not None:
        taken.extend(docker_networks(client))
    # Keep order (stable messages), drop repeats.
    return list(dict.fromkeys(taken))
