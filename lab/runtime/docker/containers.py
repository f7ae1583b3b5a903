"""A docker lab's containers: creating one per node (networks, capabilities, init script)
and what readiness checks see of it (`lab.runtime.readiness.WaitTarget`)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import TYPE_CHECKING, Any

from lab.net import DirectConnector
from lab.runtime.docker.commands import IDLE_COMMAND, CommandFactory, with_lab_route
from lab.runtime.docker.files import (
    DATA_ROOT,
    ROUTERS_READY,
    config_path,
    routes_set_file,
    signal_file,
)
from lab.runtime.docker.namespaces import CAN_ENTER_NAMESPACES, netns_socket, runs_in
from lab.topology import NodePlan, Topology

if TYPE_CHECKING:
    from lab.net import Connector
    from lab.runtime.docker.lab import DockerLab


@dataclass(frozen=True)
class ContainerSpec:
    """How a node's container is made, engine-independent: shared by `create_container` and
    the compose export (`lab.runtime.docker.compose`), so both run the same lab."""

    argv: list[str]
    cap_add: list[str]
    sysctls: dict[str, str]
    dns: list[str] | None
    hostname: str


def container_spec(
    topology: Topology,
    node: NodePlan,
    command: CommandFactory,
    gateway: IPv4Address | None,
    *,
    signals: bool = False,
    hold: bool = False,
) -> ContainerSpec:
    """What `node`'s container runs and with which kernel settings.

    Args:
        topology: the lab.
        node: the node.
        command: what the node runs (a switched-off host runs nothing).
        gateway: its router's inside address, for a node behind a router.
        signals: its init script creates `routes_set_file` once its routes are set.
        hold: its program starts once the runtime created the `ROUTERS_READY` signal.
    """
    # A switched-off host is there (its address answers ARP) but runs nothing.
    argv = command(node, config_path(node.name)) if node.running else list(IDLE_COMMAND)
    sysctls = {"net.ipv6.conf.all.disable_ipv6": "1"}  # the lab is IPv4 only
    if node.kind == "router":
        # Its own default route is deleted by the router program, with the rules.
        sysctls["net.ipv4.ip_forward"] = "1"
    else:
        argv = with_lab_route(
            argv,
            gateway,
            switched_off=not node.running,
            back_after=node.back_after,
            marker=str(routes_set_file(node.name)) if signals else "",
            hold=str(signal_file(ROUTERS_READY)) if hold else "",
        )
    dns_node = topology.dns
    return ContainerSpec(
        argv=argv,
        # Routers keep NET_ADMIN; other nodes drop it in with_lab_route.
        cap_add=["NET_ADMIN"],
        sysctls=sysctls,
        # Docker's embedded resolver forwards names it does not know to these
        # servers: the lab DNS, never the host's resolvers.
        dns=[str(dns_node.address)] if dns_node is not None else None,
        hostname=(node.hostname or node.name).split(".")[0],
    )


def create_container(
    lab: DockerLab,
    node: NodePlan,
    command: CommandFactory,
    gateway: IPv4Address | None,
    *,
    hold: bool = False,
) -> str:
    """Create (not start) `node`'s container, attached to all its networks; its id.

    Args:
        lab: the lab it belongs to (its networks exist).
        node: the node.
        command: what the node runs (a switched-off host runs nothing).
        gateway: its router's inside address, for a node behind a router.
        hold: its program waits for the runtime's `ROUTERS_READY` signal.
    """
    api = lab.client.api
    spec = container_spec(lab.topology, node, command, gateway, signals=True, hold=hold)
    host_config = api.create_host_config(
        binds={str(lab.host_dir): {"bind": str(DATA_ROOT), "mode": "rw"}},
        cap_add=spec.cap_add,
        sysctls=spec.sysctls,
        dns=spec.dns,
        init=True,  # signals reach the program; zombies are reaped
    )
    networks = list(node.addresses.items())
    first, first_address = networks[0]
    created = api.create_container(
        lab.image,
        command=spec.argv,
        name=lab.container_name(node.name),
        hostname=spec.hostname,
        labels=lab.object_labels(node=node.name),
        host_config=host_config,
        networking_config=api.create_networking_config(
            {lab.network_name(first): api.create_endpoint_config(ipv4_address=str(first_address))}
        ),
        detach=True,
    )
    container_id: str = created["Id"]
    # API 1.41 attaches one network at create time: connect the others before start.
    for network, address in networks[1:]:
        api.connect_container_to_network(
            container_id, lab.network_name(network), ipv4_address=str(address)
        )
    return container_id


class ContainerTarget:
    """`lab.runtime.readiness.WaitTarget` for one node of a docker lab."""

    def __init__(self, lab: DockerLab, node: str) -> None:
        self._lab = lab
        self._node = node

    @property
    def name(self) -> str:
        """The node's name."""
        return self._node

    def connector(self) -> Connector:
        """Connections from inside the node's container (or from the host, not as root)."""
        if CAN_ENTER_NAMESPACES:
            return self._lab.connector_for(self._node)
        return DirectConnector()

    def datagram_socket(self) -> socket.socket:
        """A UDP socket in the node's namespace (or the host's, not as root)."""
        if CAN_ENTER_NAMESPACES:
            return netns_socket(self._lab.pid(self._node), socket.SOCK_DGRAM)
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def events(self) -> list[dict[str, Any]]:
        """The node's events.jsonl."""
        return self._lab.events(self._node)

    def logs(self, tail: int = 30) -> str:
        """The container's output."""
        return self._lab.logs(self._node, tail)

    def exited(self) -> str | None:
        """None while the container runs, else its exit code.

        Asked after every failed readiness attempt: while the container's process
        is known and still there (`/proc`), the engine is not asked.
        """
        known = self._lab.known_pid(self._node)
        if known is not None and runs_in(known, self._lab.containers[self._node]):
            return None
        state = self._lab.state(self._node)
        if state.get("Running"):
            return None
        return f"exited with {state.get('ExitCode')} ({state.get('Status')})"
