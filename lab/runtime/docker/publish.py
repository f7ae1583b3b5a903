"""Endpoints of a docker lab on the host: a gateway container that stands for a developer's
machine in the customer's network, and the ports docker publishes from it (see
`DockerLab.publish_endpoints`), each with a note on what a user sees there."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import TYPE_CHECKING

from lab.errors import LabError, LabStartError
from lab.runtime.base import Endpoint
from lab.runtime.docker.commands import customer_gateways
from lab.runtime.docker.containers import ContainerTarget
from lab.runtime.docker.engine import first_line
from lab.runtime.docker.networks import (
    NETWORK_LOCK,
    SUBNET_ATTEMPTS,
    create_bridge,
    taken_subnets,
)
from lab.runtime.readiness import LogLine, wait_all
from lab.runtime.subnets import choose_subnets
from lab.topology import Action, Topology, Verdict, path_verdict

if TYPE_CHECKING:
    from lab.runtime.docker.lab import DockerLab

# `sh -c GATEWAY_SCRIPT smtplab-gateway <front address> <router or "">
# <front port>:<lab address>:<lab port>...`. Its default route is the customer's
# (the router) or none; it forwards only what it DNATs.
GATEWAY_SCRIPT = """\
set -e
front="$1"; router="$2"; shift 2
ip route del default 2>/dev/null || true
if [ -n "$router" ]; then ip route add default via "$router"; fi
for rule in "$@"; do
    port="${rule%%:*}"; target="${rule#*:}"
    address="${target%%:*}"; target_port="${target#*:}"
    iptables -w -t nat -A PREROUTING -d "$front" -p tcp --dport "$port" \
        -j DNAT --to-destination "$address:$target_port"
    iptables -w -t nat -A POSTROUTING -d "$address" -p tcp --dport "$target_port" -j MASQUERADE
done
echo "smtplab-gateway: ready"
exec setpriv --bounding-set=-net_admin -- sleep infinity
"""
GATEWAY_DONE = "smtplab-gateway: ready"
GATEWAY_NODE = "_gateway"  # "_" cannot start a scenario node's name: no clash
FRONT_NETWORK = "_front"
FRONT_PREFIX = 28
FRONT_PORT_BASE = 20000
LOOPBACK = "127.0.0.1"

# (node, lab address, lab port, note) of one published port.
Wanted = tuple[str, str, int, str]


def publish(lab: DockerLab, host: str) -> list[Endpoint]:
    """Create the front network and the gateway; the endpoints once it is ready.

    Raises:
        LabStartError: the engine refused the front network.
        TimeoutError: the gateway did not set up its forwarding in time.
    """
    wanted = _published_ports(lab.topology)
    if not wanted:
        return []
    front = _create_front_network(lab)
    gateway = _create_gateway(lab, front, wanted, host)
    lab.containers[GATEWAY_NODE] = gateway
    api = lab.client.api
    api.start(gateway)
    check = LogLine(GATEWAY_DONE).with_startup_timeout(lab.ready_timeout)
    asyncio.run(wait_all([(ContainerTarget(lab, GATEWAY_NODE), check)]))
    published = api.inspect_container(gateway)["NetworkSettings"]["Ports"]
    endpoints = []
    for index, (node, address, port, note) in enumerate(wanted):
        [binding] = published[f"{FRONT_PORT_BASE + index}/tcp"]
        endpoints.append(
            Endpoint(node, address, port, binding["HostIp"], int(binding["HostPort"]), note)
        )
    return endpoints


def _create_front_network(lab: DockerLab) -> IPv4Network:
    """The gateway's own small network, whose ports docker publishes; its subnet."""
    import docker.errors

    for attempt in range(1, SUBNET_ATTEMPTS + 1):
        # Planned afresh each time: another lab may take a subnet meanwhile.
        try:
            with NETWORK_LOCK:
                taken = taken_subnets(lab.client)
                [front] = choose_subnets(1, taken, prefix=FRONT_PREFIX)
                lab.networks[FRONT_NETWORK] = create_bridge(
                    lab.client.api,
                    lab.network_name(FRONT_NETWORK),
                    front,
                    front.network_address + 1,
                    internal=False,  # docker publishes ports from non-internal networks only
                    labels=lab.object_labels(network=FRONT_NETWORK),
                )
            return front
        except docker.errors.APIError as error:
            if "overlap" not in str(error) or attempt == SUBNET_ATTEMPTS:
                raise LabStartError(f"lab {lab.id}: {first_line(error)}") from error
    raise AssertionError("unreachable")


def _create_gateway(lab: DockerLab, front: IPv4Network, wanted: list[Wanted], host: str) -> str:
    """The gateway container (not started), on the front network and the client's; its id."""
    api = lab.client.api
    topology = lab.topology
    client_node = topology.client
    front_address = front.network_address + 2
    network = next(iter(client_node.addresses))
    gateway_address = _free_address(topology, network)
    router = customer_gateways(topology).get(client_node.name)
    rules = [
        f"{FRONT_PORT_BASE + index}:{address}:{port}"
        for index, (_, address, port, _) in enumerate(wanted)
    ]
    script_args = [str(front_address), str(router or ""), *rules]
    front_ports = [FRONT_PORT_BASE + index for index in range(len(wanted))]
    host_config = api.create_host_config(
        cap_add=["NET_ADMIN"],
        sysctls={"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.disable_ipv6": "1"},
        port_bindings=dict.fromkeys(front_ports, (host, None)),
        init=True,
    )
    container = api.create_container(
        lab.image,
        command=["sh", "-c", GATEWAY_SCRIPT, "smtplab-gateway", *script_args],
        name=lab.container_name(GATEWAY_NODE),
        hostname="gateway",
        labels=lab.object_labels(node=GATEWAY_NODE),
        ports=front_ports,
        host_config=host_config,
        networking_config=api.create_networking_config(
            {
                lab.network_name(FRONT_NETWORK): api.create_endpoint_config(
                    ipv4_address=str(front_address)
                )
            }
        ),
        detach=True,
    )
    container_id: str = container["Id"]
    api.connect_container_to_network(
        container_id, lab.network_name(network), ipv4_address=str(gateway_address)
    )
    return container_id


def _published_ports(topology: Topology) -> list[Wanted]:
    """(node, lab address, lab port, note) for every server port, seen from the client."""
    client = topology.client.name
    wanted = []
    for name, node in topology.nodes.items():
        if node.kind == "dns":
            continue  # DNS is UDP; endpoints are TCP
        for port in node.tcp_ports:
            address = str(node.address)
            verdict = path_verdict(topology, client, address, port)
            wanted.append((name, address, port, _endpoint_note(verdict)))
    return wanted


def _endpoint_note(verdict: Verdict) -> str:
    """What a user sees on the published port, as measured on Engine 20.10 with its
    default userland proxy (`docker-proxy` accepts on the host, then dials the lab)."""
    if verdict.action is Action.DROP:
        return (
            f"{verdict.reason}: the connect succeeds on the host (docker's userland "
            f"proxy accepts), then the connection closes without a byte after about "
            f"{_syn_give_up():.0f} s, when the proxy's own SYNs go unanswered; the customer's "
            "program inside the lab gets a real connect timeout"
        )
    if verdict.action is Action.REJECT:
        return (
            f"{verdict.reason}: the connect succeeds on the host (docker's userland proxy "
            "accepts), then the connection closes at once without a byte; inside the lab "
            "it is 'connection refused'"
        )
    if verdict.action in (Action.UNREACHABLE, Action.NET_UNREACHABLE):
        return f"{verdict.reason}: accepted on the host, then closed at once"
    return verdict.reason


def _syn_give_up() -> float:
    """Seconds until this host's kernel gives up a connect nobody answers: the first
    retransmission after 1 s, doubling, `net.ipv4.tcp_syn_retries` times (6: 127 s)."""
    try:
        retries = int(Path("/proc/sys/net/ipv4/tcp_syn_retries").read_text())
    except (OSError, ValueError):
        retries = 6
    return float(2 ** (retries + 1) - 1)


def _free_address(topology: Topology, network: str) -> IPv4Address:
    """An address in `network` that no node of the topology holds (for the gateway)."""
    subnet = topology.networks[network].subnet
    used = {address for node in topology.nodes.values() for address in node.addresses.values()}
    used.add(topology.networks[network].gateway)
    for host in reversed(list(subnet.hosts())):
        if host not in used:
            return host
    raise LabError(f"network {network}: no address left for the endpoint gateway")
