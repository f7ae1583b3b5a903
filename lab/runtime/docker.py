"""The docker backend: one lab = its own docker networks and one container per node.

Layout (measured on Engine 20.10 with the host's bridge netfilter; see
DESIGN.md): the customer-side networks (a router's inside) are ordinary
bridges, every other lab network is `internal` (no route off the host); a
router container has `NET_ADMIN`, IP forwarding on, its own default route
deleted and iptables rules from `lab.nodes.router.router_rules`; customer
nodes get their default route replaced by the router's inside address, and
all other nodes lose theirs, before their program starts; then they lose
`NET_ADMIN`. So no lab node has a route to anything but lab subnets.

A lab is up when every node passed its readiness checks
(`lab.runtime.readiness`: greeting read, SOA answered, `router-ready`, the
init script's "routes set"), never after a sleep; a failure carries the
node's container log and events. Each lab's files (node configs, TLS files,
node data dirs) live on the host under `<state>/docker/<lab id>`, bind-mounted
at `/var/lib/smtplab`.

Everything created carries the labels of `lab.runtime.labels`: `down`, the
per-process `atexit` hook and `reap` select by label, never by name. When
`up` fails halfway, whatever it created so far is removed before the error
propagates. A detached lab (`smtplab up`) carries no owner pid: it runs until
`smtplab down`, and `reap` leaves it alone.

`publish_endpoints` adds a gateway container that stands for a developer's
machine in the customer's network (see there).

Only the docker SDK's low-level API is used, and never `containers.run`: it
pulls a missing image, which offline is a slow failure.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import ctypes
import errno
import functools
import json
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lab.config import settings
from lab.errors import LabError, LabStartError
from lab.net import ConnectRefused, ConnectTimeout, DirectConnector, HostUnreachable, Streams
from lab.nodes.events import read_events
from lab.runtime import labels
from lab.runtime.base import Endpoint
from lab.runtime.readiness import LogLine, WaitStrategy, role_checks, wait_all
from lab.runtime.subnets import NEVER, choose_subnets, host_taken_networks
from lab.topology import Action, NodePlan, Topology, Verdict, path_verdict, resolve

if TYPE_CHECKING:
    from lab.net import Connector
    from lab.runtime.base import Backend, Lab
    from lab.scenario.model import MailSettings, Scenario
    from lab.smtp.client import SendResult

# Where the lab's host directory appears in every container; node data dirs are below it.
DATA_ROOT = Path("/var/lib/smtplab")
# Node configs live beside the data dirs; "_" cannot start a node name, so no clash.
CONFIG_DIR = "_config"
TLS_DIR = "_tls"  # the lab CA and every server's certificate and key
RUN_DIR = "_run"  # one-shot files for `docker exec` (mail settings with a password)
IDLE_COMMAND = ["sleep", "infinity"]
READY_TIMEOUT = 15.0
RESOLVE_TIMEOUT = 2.0
SUBNET_ATTEMPTS = 5
ENGINE_TIMEOUT = 60  # seconds per API call; image builds stream, so they are not cut short

CommandFactory = Callable[[NodePlan, str], list[str]]
# What must hold before a node counts as up, given what its container runs.
ReadinessFactory = Callable[[NodePlan, Topology], list[WaitStrategy]]
Progress = Callable[[str], None]


def _say_nothing(message: str) -> None:
    del message


def node_command(node: NodePlan, config_path: str) -> list[str]:
    """What a node's container runs: its role's program; the client idles (`send` execs it)."""
    if node.kind == "client":
        return list(IDLE_COMMAND)
    return ["python3", "-m", "lab.nodes", node.kind, config_path]


# Run as `sh -c INIT smtplab-init <gateway or ""> <"off" or ""> <program...>`. A failure
# exits with 97 rather than run the program with a route out of the lab.
INIT_SCRIPT = """\
gateway="$1"; off="$2"; shift 2
if [ -n "$gateway" ]; then
    ip route replace default via "$gateway" || exit 97
else
    ip route del default 2>/dev/null
    if ip route show default | grep -q .; then exit 97; fi
fi
if [ -n "$off" ]; then
    iptables -w -P INPUT DROP || exit 97
fi
echo "smtplab-init: routes set"
exec setpriv --bounding-set=-net_admin -- "$@"
"""
# What the init script prints once routes (and a switched-off host's firewall) are in place.
INIT_DONE = "smtplab-init: routes set"

# The endpoint gateway (`DockerLab.publish_endpoints`): `sh -c GATEWAY_SCRIPT smtplab-gateway
# <front address> <router or ""> <front port>:<lab address>:<lab port>...`. Its default
# route is the customer's (the router) or none; it forwards only what it DNATs.
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


def with_lab_route(
    command: list[str], gateway: IPv4Address | None, *, switched_off: bool = False
) -> list[str]:
    """`command`, run after fixing the default route and dropping `NET_ADMIN`.

    Behind a router the default route points at the router's inside address;
    elsewhere it is deleted (docker gives containers on internal networks a
    default route to the host bridge, which then drops what they send: better
    none at all). A switched-off host drops every packet sent to it, so a
    client waits out its connect timeout, as `path_verdict` says. The container
    needs `NET_ADMIN` for this; `setpriv` removes it from the bounding set
    before the program starts, so the program cannot route around the ISP
    (`docker exec` still has it, for inspection).
    """
    off = "off" if switched_off else ""
    return ["sh", "-c", INIT_SCRIPT, "smtplab-init", str(gateway or ""), off, *command]


def customer_gateways(topology: Topology) -> dict[str, IPv4Address]:
    """Node name -> its router's inside address, for every node behind a router."""
    gateways: dict[str, IPv4Address] = {}
    for router, spec in topology.routers():
        for node in topology.nodes.values():
            if node.kind != "router" and spec.inside in node.addresses:
                gateways[node.name] = router.addresses[spec.inside]
    return gateways


# --- subnets --------------------------------------------------------------------------------


def docker_subnets(scenario: Scenario, client: Any) -> dict[str, IPv4Network]:
    """Subnets for `scenario`'s networks that overlap no host route and no docker network.

    Pinned subnets are kept, after checking them the same way.

    Raises:
        LabError: a pinned subnet collides with something on this host.
    """
    taken = host_taken_networks(client)
    pinned = {name: net.subnet for name, net in scenario.networks.items() if net.subnet}
    for name, subnet in pinned.items():
        clash = _clash(subnet, taken)
        if clash is not None:
            raise LabError(f"network {name}: subnet {subnet} {clash}; choose another")
    free = iter(choose_subnets(len(scenario.networks) - len(pinned), [*taken, *pinned.values()]))
    return {name: pinned.get(name) or next(free) for name in scenario.networks}


def _clash(subnet: IPv4Network, taken: Iterable[IPv4Network]) -> str | None:
    for other in NEVER:
        if subnet.overlaps(other):
            return f"overlaps {other}, which a lab never uses"
    for other in taken:
        if subnet.overlaps(other):
            return f"overlaps {other}, which this host already uses"
    return None


# --- sockets inside a container's network namespace -----------------------------------------

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def netns_socket(pid: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> socket.socket:
    """A socket created in the network namespace of process `pid` (needs root).

    A socket belongs to the namespace it was created in for its whole life, so
    connecting it later from here goes out exactly as the container's own
    traffic would: its routes, its router, its firewall. The namespace switch
    happens in a throwaway thread (namespaces are per thread), never in this one.

    Raises:
        OSError: the namespace cannot be entered (not root, process gone).
    """
    made: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter_and_create() -> None:
        try:
            descriptor = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                if _libc.setns(descriptor, _CLONE_NEWNET) != 0:
                    number = ctypes.get_errno()
                    raise OSError(number, f"setns into pid {pid}: {os.strerror(number)}")
            finally:
                os.close(descriptor)
            made.append(socket.socket(socket.AF_INET, kind))
        except BaseException as error:
            failed.append(error)

    thread = threading.Thread(target=enter_and_create, name=f"netns-{pid}")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return made[0]


class NamespaceConnector:
    """`lab.net.Connector` for a container: connections from inside its network namespace."""

    def __init__(self, pid: Callable[[], int]) -> None:
        self._pid = pid

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect from the container; errors mapped like `lab.net.open_tcp`."""
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(netns_socket, self._pid())
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), timeout)
            return await asyncio.open_connection(sock=sock)
        except TimeoutError:
            sock.close()
            raise ConnectTimeout(
                errno.ETIMEDOUT, f"connect to {host}:{port} timed out after {timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            sock.close()
            raise ConnectRefused(
                errno.ECONNREFUSED, f"connection to {host}:{port} refused"
            ) from None
        except OSError as error:
            sock.close()
            if error.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                raise HostUnreachable(error.errno, f"no route to {host}:{port}") from None
            raise
        except BaseException:
            sock.close()
            raise


# Entering a container's network namespace needs root; without it, the host's own
# connections to the lab bridges stand in (they reach every lab address directly).
CAN_ENTER_NAMESPACES = os.geteuid() == 0


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
        """None while the container runs, else its exit code."""
        state = self._lab.state(self._node)
        if state.get("Running"):
            return None
        return f"exited with {state.get('ExitCode')} ({state.get('Status')})"


# --- a running lab --------------------------------------------------------------------------

# Held while checking subnets and creating networks (see `DockerBackend._up_once`).
NETWORK_LOCK = threading.Lock()

# Labs this process started and has not taken down: removed at interpreter exit.
_LIVE: dict[str, DockerLab] = {}
_LIVE_LOCK = threading.Lock()


@atexit.register
def _down_live_labs() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE.values())
    for lab in live:
        with contextlib.suppress(Exception):
            lab.down_sync()


class DockerLab:
    """A running docker lab. Also a (sync and async) context manager that takes it down."""

    backend = "docker"

    def __init__(
        self,
        client: Any,
        topology: Topology,
        lab_id: str,
        host_dir: Path,
        image: str,
        *,
        detached: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        readiness: ReadinessFactory = role_checks,
    ) -> None:
        self._client = client
        self._topology = topology
        self._id = lab_id
        self.host_dir = host_dir
        self.image = image
        # Detached labs (`smtplab up`) carry no owner pid: the reaper leaves them alone.
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.readiness = readiness
        self.containers: dict[str, str] = {}  # node -> container id
        self.networks: dict[str, str] = {}  # scenario network -> docker network id
        self._pids: dict[str, int] = {}
        self._ca_file: Path | None = None
        self._endpoints: list[Endpoint] = []
        self._down = False

    @property
    def id(self) -> str:
        """The value of the `smtplab.lab` label on everything this lab owns."""
        return self._id

    @property
    def topology(self) -> Topology:
        """What is running."""
        return self._topology

    @property
    def ca_file(self) -> Path | None:
        """The lab CA certificate (host path) that signs every server certificate."""
        return self._ca_file

    def container_name(self, node: str) -> str:
        """The container of `node` (names are for people; code selects by label)."""
        return f"smtplab-{self._id}-{node}"

    def network_name(self, network: str) -> str:
        """The docker network standing for scenario network `network`."""
        return f"smtplab-{self._id}-{network}"

    # -- what runs where ----------------------------------------------------------------------

    def pid(self, node: str) -> int:
        """The host pid of `node`'s container's main process."""
        if node not in self._pids:
            state = self._client.api.inspect_container(self.containers[node])["State"]
            if not state.get("Running"):
                raise LabError(f"node {node} is not running ({state.get('Status')})")
            self._pids[node] = int(state["Pid"])
        return self._pids[node]

    def state(self, node: str) -> dict[str, Any]:
        """The `State` part of `docker inspect` for `node`'s container."""
        state: dict[str, Any] = self._client.api.inspect_container(self.containers[node])["State"]
        return state

    def exec(self, node: str, command: list[str]) -> tuple[int, str]:
        """Run `command` in `node`'s container; (exit code, stdout and stderr)."""
        api = self._client.api
        exec_id = api.exec_create(self.containers[node], command, stdout=True, stderr=True)
        output = api.exec_start(exec_id, demux=False)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return int(code), (output or b"").decode(errors="replace")

    def connector_for(self, node: str) -> NamespaceConnector:
        """Opens TCP connections from inside `node`'s container (routes, router, NAT)."""
        return NamespaceConnector(lambda: self.pid(node))

    async def resolve(self, node: str, name: str, rdtype: str = "A") -> list[str]:
        """Ask the lab DNS from inside `node`'s container; [] when there is no lab DNS.

        Raises:
            lab.nodes.resolver.DnsLookupError: NXDOMAIN, NODATA (permanent), else temporary.
        """
        dns_node = self._topology.dns
        if dns_node is None:
            return []
        return await asyncio.to_thread(_query, self.pid(node), str(dns_node.address), name, rdtype)

    async def send(self, settings: MailSettings) -> SendResult:
        """Run the mail program once in the client's container and read its JSON result."""
        from lab.smtp.client import SendResult

        client = self._topology.client
        # The settings (with the password) go through a file only root and the
        # container can read, never the command line: `ps` and `docker inspect` show that.
        name = f"settings-{secrets.token_hex(8)}.json"
        settings_file = self.host_dir / RUN_DIR / name
        settings_file.parent.mkdir(mode=0o700, exist_ok=True)
        descriptor = os.open(settings_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(settings.model_dump_json(by_alias=True))
        command = [
            "python3", "-m", "lab.nodes", "client", _config_path(client.name),
            "--settings-file", str(DATA_ROOT / RUN_DIR / name),
        ]  # fmt: skip
        try:
            code, output = await asyncio.to_thread(self.exec, client.name, command)
        finally:
            settings_file.unlink(missing_ok=True)
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            shown = _mask(output, settings)
            raise LabError(f"the mail program failed in {client.name} (exit {code}): {shown}")
        result: SendResult = SendResult.from_json(json.loads(lines[-1]))
        return result

    def mailbox(self, node: str, address: str) -> list[bytes]:
        """Raw messages in a mailbox, read from the bind-mounted data dir."""
        from lab.nodes.mailserver.store import MailStore

        store = MailStore(self.data_dir(node) / "mailboxes")
        return [message.data for message in store.messages(address)]

    def events(self, node: str) -> list[dict[str, Any]]:
        """The node's event log."""
        return read_events(self.data_dir(node))

    def data_dir(self, node: str) -> Path:
        """The node's data dir as the host sees it."""
        return self.host_dir / node

    def endpoints(self) -> list[Endpoint]:
        """Ports opened by `publish_endpoints`."""
        return list(self._endpoints)

    async def publish_endpoints(self, host: str = LOOPBACK) -> list[Endpoint]:
        """Entry points on `host` that behave as a machine in the customer's network.

        A gateway container stands for the developer's machine: it sits in the
        client's network (its default route is the client's, through the ISP
        router) and on a small `front` network of its own, whose ports docker
        publishes on `host`. Each published port is DNATed by the gateway's
        kernel to one server address and port and MASQUERADEd to the gateway's
        customer-side address: the router then sees an ordinary customer
        connection and applies its policy for real. What a dropped or rejected
        port looks like from `host` is shaped by docker's userland proxy,
        which accepts on `host` before it connects onwards; the notes say so.
        """
        if not self._endpoints:
            self._endpoints = await asyncio.to_thread(self._publish, host)
        return self.endpoints()

    def _publish(self, host: str) -> list[Endpoint]:
        """Create the front network and the gateway; the endpoints once it is ready."""
        import docker.errors

        client_node = self._topology.client
        wanted = _published_ports(self._topology)
        if not wanted:
            return []
        api = self._client.api
        front, created = None, None
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            # Planned afresh each time: another lab may take a subnet meanwhile.
            try:
                with NETWORK_LOCK:
                    taken = host_taken_networks(self._client)
                    [front] = choose_subnets(1, taken, prefix=FRONT_PREFIX)
                    created = api.create_network(
                        self.network_name(FRONT_NETWORK),
                        driver="bridge",
                        internal=False,  # docker publishes ports from non-internal networks only
                        ipam=_ipam(front, front.network_address + 1),
                        labels=self._labels(network=FRONT_NETWORK),
                        check_duplicate=True,
                    )
                break
            except docker.errors.APIError as error:
                if "overlap" not in str(error) or attempt == SUBNET_ATTEMPTS:
                    raise LabStartError(f"lab {self._id}: {_first_line(error)}") from error
        assert front is not None
        assert created is not None
        self.networks[FRONT_NETWORK] = created["Id"]
        front_address = front.network_address + 2
        network = next(iter(client_node.addresses))
        gateway_address = _free_address(self._topology, network)
        router = customer_gateways(self._topology).get(client_node.name)
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
            self.image,
            command=["sh", "-c", GATEWAY_SCRIPT, "smtplab-gateway", *script_args],
            name=self.container_name(GATEWAY_NODE),
            hostname="gateway",
            labels=self._labels(node=GATEWAY_NODE),
            ports=front_ports,
            host_config=host_config,
            networking_config=api.create_networking_config(
                {
                    self.network_name(FRONT_NETWORK): api.create_endpoint_config(
                        ipv4_address=str(front_address)
                    )
                }
            ),
            detach=True,
        )
        self.containers[GATEWAY_NODE] = container["Id"]
        api.connect_container_to_network(
            container["Id"], self.network_name(network), ipv4_address=str(gateway_address)
        )
        api.start(container["Id"])
        check = LogLine(GATEWAY_DONE).with_startup_timeout(self.ready_timeout)
        asyncio.run(wait_all([(ContainerTarget(self, GATEWAY_NODE), check)]))
        published = api.inspect_container(container["Id"])["NetworkSettings"]["Ports"]
        endpoints = []
        for index, (node, address, port, note) in enumerate(wanted):
            [binding] = published[f"{FRONT_PORT_BASE + index}/tcp"]
            endpoints.append(
                Endpoint(node, address, port, binding["HostIp"], int(binding["HostPort"]), note)
            )
        return endpoints

    def logs(self, node: str, tail: int = 50) -> str:
        """The last lines the node's container wrote to stdout and stderr."""
        output: bytes = self._client.api.logs(self.containers[node], tail=tail)
        return output.decode(errors="replace")

    # -- lifecycle ----------------------------------------------------------------------------

    def create_networks(self) -> None:
        """One docker network per scenario network, on the planned subnets."""
        api = self._client.api
        for network in self._topology.networks.values():
            ipam = _ipam(network.subnet, network.gateway)
            created = api.create_network(
                self.network_name(network.name),
                driver="bridge",
                # The customer's side is an ordinary bridge (routing through the router
                # container needs it, see the module docstring); the rest has no way out.
                internal=not network.customer_side,
                ipam=ipam,
                labels=self._labels(network=network.name),
                check_duplicate=True,
            )
            self.networks[network.name] = created["Id"]

    def create(self, command: CommandFactory) -> None:
        """Create the containers (networks exist), start them (routers before what stands
        behind them), and wait until every node passes its readiness checks."""
        self._write_files()
        gateways = customer_gateways(self._topology)
        nodes = list(self._topology.nodes.values())
        _in_parallel(
            [
                functools.partial(self._create_container, node, command, gateways.get(node.name))
                for node in nodes
            ]
        )
        # A program behind a router may send as soon as it starts: it starts only once the
        # router's rules are in place. Everything else (servers on the outside networks,
        # the idle client) starts together with the routers.
        behind = [
            node
            for node in nodes
            if node.name in gateways and node.kind != "client" and node.running
        ]
        first = [node for node in nodes if node not in behind]
        self._start_all(first)
        routers = [node for node in first if node.kind == "router"]
        self._wait_ready(routers)
        self._start_all(behind)
        self._wait_ready([node for node in nodes if node.kind != "router"])

    def _labels(self, **keys: str) -> dict[str, str]:
        return labels.create_labels(
            self._id, scenario=self._topology.scenario.id, detached=self.detached, **keys
        )

    def _write_files(self) -> None:
        """Node configs under `_config/`, certificates under `_tls/`, empty data dirs."""
        from lab.nodes.config import ClientConfig, MailServerConfig, TlsFiles
        from lab.nodes.tls import issue_certificates
        from lab.scenario.model import MailServerNode

        (self.host_dir / CONFIG_DIR).mkdir(parents=True, exist_ok=True)
        servers = {
            name: spec.certificate
            for name, spec in self._topology.scenario.nodes.items()
            if isinstance(spec, MailServerNode)
        }
        hostnames = {
            spec.hostname: fault
            for name, fault in servers.items()
            if isinstance(spec := self._topology.scenario.nodes[name], MailServerNode)
        }
        self._ca_file, issued = issue_certificates(self.host_dir / TLS_DIR, hostnames)
        # The same files, as the containers see them.
        ca_file = DATA_ROOT / TLS_DIR / self._ca_file.name
        for node in self._topology.nodes.values():
            if node.config.data_dir != DATA_ROOT / node.name:
                raise LabStartError(
                    f"node {node.name}: data_dir {node.config.data_dir} is not under "
                    f"{DATA_ROOT}; resolve the topology with data_root={DATA_ROOT}"
                )
            self.data_dir(node.name).mkdir(parents=True, exist_ok=True)
            config = node.config
            if isinstance(config, MailServerConfig):
                files = issued[config.hostname]
                tls = TlsFiles(
                    cert_file=DATA_ROOT / TLS_DIR / files.cert_file.name,
                    key_file=DATA_ROOT / TLS_DIR / files.key_file.name,
                    fault=files.fault,
                )
                config = config.model_copy(update={"tls": tls, "ca_file": ca_file})
            elif isinstance(config, ClientConfig):
                config = config.model_copy(update={"ca_file": ca_file})
            path = self.host_dir / CONFIG_DIR / f"{node.name}.json"
            path.write_text(config.model_dump_json(indent=2) + "\n", encoding="utf-8")

    def _create_container(
        self, node: NodePlan, command: CommandFactory, gateway: IPv4Address | None
    ) -> None:
        api = self._client.api
        # A switched-off host is there (its address answers ARP) but runs nothing.
        argv = command(node, _config_path(node.name)) if node.running else list(IDLE_COMMAND)
        cap_add: list[str] = []
        sysctls = {"net.ipv6.conf.all.disable_ipv6": "1"}  # the lab is IPv4 only
        cap_add.append("NET_ADMIN")  # routers keep it; other nodes drop it in with_lab_route
        if node.kind == "router":
            # Its own default route is deleted by the router program, with the rules.
            sysctls["net.ipv4.ip_forward"] = "1"
        else:
            argv = with_lab_route(argv, gateway, switched_off=not node.running)
        dns_node = self._topology.dns
        host_config = api.create_host_config(
            binds={str(self.host_dir): {"bind": str(DATA_ROOT), "mode": "rw"}},
            cap_add=cap_add or None,
            sysctls=sysctls,
            # Docker's embedded resolver forwards names it does not know to these
            # servers: the lab DNS, never the host's resolvers.
            dns=[str(dns_node.address)] if dns_node is not None else None,
            init=True,  # signals reach the program; zombies are reaped
        )
        networks = list(node.addresses.items())
        first, first_address = networks[0]
        created = api.create_container(
            self.image,
            command=argv,
            name=self.container_name(node.name),
            hostname=(node.hostname or node.name).split(".")[0],
            labels=self._labels(node=node.name),
            host_config=host_config,
            networking_config=api.create_networking_config(
                {
                    self.network_name(first): api.create_endpoint_config(
                        ipv4_address=str(first_address)
                    )
                }
            ),
            detach=True,
        )
        self.containers[node.name] = created["Id"]
        # API 1.41 attaches one network at create time: connect the others before start.
        for network, address in networks[1:]:
            api.connect_container_to_network(
                created["Id"], self.network_name(network), ipv4_address=str(address)
            )

    def _start_all(self, nodes: list[NodePlan]) -> None:
        api = self._client.api
        _in_parallel([functools.partial(api.start, self.containers[node.name]) for node in nodes])

    def checks(self, node: NodePlan) -> list[WaitStrategy]:
        """What must hold before `node` counts as up (`lab.runtime.readiness`)."""
        found = self.readiness(node, self._topology)
        if node.kind != "router":
            found.append(LogLine(INIT_DONE))  # routes set, NET_ADMIN dropped
        return [check.with_startup_timeout(self.ready_timeout) for check in found]

    def _wait_ready(self, nodes: list[NodePlan]) -> None:
        """Every check of every node in `nodes`, concurrently (never a fixed sleep).

        Raises:
            LabStartError: a node exited or timed out; with its log.
        """
        checks = [
            (ContainerTarget(self, node.name), check)
            for node in nodes
            for check in self.checks(node)
        ]
        asyncio.run(wait_all(checks))

    def down_sync(self) -> None:
        """Remove containers, networks and the host directory; idempotent."""
        if self._down:
            return
        remove_lab(self._client, self._id, self.host_dir)
        self._down = True
        with _LIVE_LOCK:
            _LIVE.pop(self._id, None)

    async def down(self) -> None:
        """Stop every node and remove everything the lab created; idempotent."""
        await asyncio.to_thread(self.down_sync)

    def __enter__(self) -> DockerLab:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.down_sync()

    async def __aenter__(self) -> DockerLab:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.down()


def _published_ports(topology: Topology) -> list[tuple[str, str, int, str]]:
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
    if verdict.action is Action.UNREACHABLE:
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


def _in_parallel(calls: list[Callable[[], object]]) -> None:
    """Run engine calls in threads (the engine serves them concurrently); re-raise the first
    error once all have finished, so that nothing is left half-made unnoticed."""
    if not calls:
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(calls))) as pool:
        futures = [pool.submit(call) for call in calls]
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()


def _mask(text: str, settings: MailSettings) -> str:
    """`text` with the AUTH password replaced, should a program have printed it."""
    password = settings.auth.password if settings.auth is not None else ""
    return text.replace(password, "********") if password else text


def _config_path(node: str) -> str:
    return str(DATA_ROOT / CONFIG_DIR / f"{node}.json")


def _ipam(subnet: IPv4Network, gateway: IPv4Address) -> Any:
    from docker.types import IPAMConfig, IPAMPool

    return IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(gateway))])


def _query(pid: int, server: str, name: str, rdtype: str) -> list[str]:
    """One UDP question from inside process `pid`'s namespace; errors as `lab.nodes.resolver`'s."""
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    from lab.nodes.resolver import DnsTemporaryFailure, NameNotFound, NoRecords

    shown = name.rstrip(".") or "."
    query = dns.message.make_query(name, rdtype)
    try:
        with netns_socket(pid, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)  # dnspython waits on it with its own timeout
            answer = dns.query.udp(query, server, timeout=RESOLVE_TIMEOUT, sock=sock)
    except dns.exception.Timeout:
        raise DnsTemporaryFailure(
            shown, rdtype, f"timeout: no answer from {server}:53 within {RESOLVE_TIMEOUT:g} s"
        ) from None
    rcode = answer.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        raise NameNotFound(shown, rdtype, "NXDOMAIN (domain does not exist)")
    if rcode != dns.rcode.NOERROR:
        raise DnsTemporaryFailure(
            shown, rdtype, f"{dns.rcode.to_text(rcode)} ({server}:53 answered {rcode})"
        )
    wanted = dns.rdatatype.from_text(rdtype)
    records = [
        rdata.to_text() for rrset in answer.answer if rrset.rdtype == wanted for rdata in rrset
    ]
    if not records:
        raise NoRecords(shown, rdtype, f"no {rdtype} records (NODATA)")
    return records


# --- removal by label -----------------------------------------------------------------------


def remove_lab(client: Any, lab_id: str, host_dir: Path | None = None) -> None:
    """Remove every container and network labelled `smtplab.lab=lab_id`, then its host dir.

    Found by label, not by what this process remembers, so that a lab left by a
    crashed run (or one that `up` created only half of) goes just the same.
    """
    import docker.errors

    api = client.api
    wanted = labels.selector(labels.LAB, lab_id)
    containers = api.containers(all=True, filters=wanted)

    def remove_container(container_id: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(container_id, force=True, v=True)

    # Where the containers really keep their files (the creator's SMTPLAB_STATE may differ
    # from ours); read before they go.
    host_dir = host_dir or mounted_host_dir(containers, lab_id) or lab_state_dir(lab_id)
    _in_parallel([functools.partial(remove_container, c["Id"]) for c in containers])
    for network in api.networks(filters=wanted):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(network["Id"])
    if host_dir.exists():
        shutil.rmtree(host_dir, ignore_errors=True)


def mounted_host_dir(containers: Iterable[Mapping[str, Any]], lab_id: str) -> Path | None:
    """The host directory bind-mounted at `DATA_ROOT` in a lab's containers (as listed by
    the engine), or None. Only a directory named after the lab counts: a label alone must
    never lead to deleting some other folder."""
    for container in containers:
        for mount in container.get("Mounts") or []:
            source = mount.get("Source")
            if mount.get("Destination") == str(DATA_ROOT) and source:
                path = Path(source)
                if path.name == lab_id:
                    return path
    return None


def lab_state_dir(lab_id: str) -> Path:
    """The host directory bind-mounted into lab `lab_id`'s containers.

    Under `docker/`, apart from `labs/`, where the CLI keeps the records of
    local labs: a docker lab is found by its label, never by a file.
    """
    return settings.state_dir / "docker" / lab_id


def list_labs(client: Any) -> dict[str, dict[str, str]]:
    """Lab id -> the labels of one of its objects, for every labelled container and network."""
    found: dict[str, dict[str, str]] = {}
    selector = labels.selector(labels.LAB)
    for container in client.api.containers(all=True, filters=selector):
        found.setdefault(container["Labels"][labels.LAB], container["Labels"])
    for network in client.api.networks(filters=selector):
        found.setdefault(network["Labels"][labels.LAB], network["Labels"])
    return found


@dataclass(frozen=True)
class LabInfo:
    """A docker lab as the engine shows it (found by label)."""

    id: str
    scenario: str
    nodes: dict[str, str]  # node -> container state ("running", "exited", ...)
    owner: str | None  # "<pid>:<start>" of the owning process; None for detached labs
    host: str
    created: float  # seconds since the epoch, of its oldest container
    host_dir: Path | None

    @property
    def detached(self) -> bool:
        """Started by `smtplab up`: it runs until `smtplab down`."""
        return self.owner is None

    @property
    def owner_alive(self) -> bool | None:
        """Whether the owning process still runs (None: detached, or another host's)."""
        if self.owner is None or self.host != socket.gethostname():
            return None
        return labels.owner_alive(self.owner)


def describe_labs(client: Any) -> list[LabInfo]:
    """Every labelled lab on the engine, oldest first."""
    selector = labels.selector(labels.LAB)
    containers: dict[str, list[dict[str, Any]]] = {}
    for container in client.api.containers(all=True, filters=selector):
        containers.setdefault(container["Labels"][labels.LAB], []).append(container)
    infos = []
    for lab_id, object_labels in list_labs(client).items():
        mine = containers.get(lab_id, [])
        infos.append(
            LabInfo(
                id=lab_id,
                scenario=object_labels.get(labels.SCENARIO, "?"),
                nodes={
                    c["Labels"].get(labels.NODE, c["Id"][:12]): str(c.get("State", "?"))
                    for c in mine
                },
                owner=object_labels.get(labels.PID),
                host=object_labels.get(labels.HOST, ""),
                created=min((float(c.get("Created", 0)) for c in mine), default=0.0),
                host_dir=mounted_host_dir(mine, lab_id),
            )
        )
    return sorted(infos, key=lambda info: (info.created, info.id))


def find_lab(client: Any, lab_id: str) -> LabInfo | None:
    """The lab called `lab_id`, or None."""
    return next((info for info in describe_labs(client) if info.id == lab_id), None)


def container_logs(client: Any, lab_id: str, node: str, tail: int | str = "all") -> str:
    """What `node`'s container of lab `lab_id` wrote to stdout and stderr.

    Raises:
        NoSuchLab: no container of that lab runs that node.
    """
    from lab.errors import NoSuchLab

    found = client.api.containers(
        all=True, filters={"label": [f"{labels.LAB}={lab_id}", f"{labels.NODE}={node}"]}
    )
    if not found:
        raise NoSuchLab(f"lab {lab_id} has no node {node!r}")
    output: bytes = client.api.logs(found[0]["Id"], tail=tail)
    return output.decode(errors="replace")


def orphaned(object_labels: Mapping[str, str]) -> bool:
    """Whether the process that created an object is gone (only knowable on its own host)."""
    owner = object_labels.get(labels.PID)
    if owner is None or object_labels.get(labels.HOST) != socket.gethostname():
        return False
    if object_labels.get(labels.SESSION) == labels.SESSION_ID:
        return False
    return not labels.owner_alive(owner)


def reap(client: Any, *, all_labs: bool = False) -> list[str]:
    """Remove labs whose owning process is gone (all labs with `all_labs`); their ids."""
    removed = []
    for lab_id, object_labels in sorted(list_labs(client).items()):
        if all_labs or orphaned(object_labels):
            remove_lab(client, lab_id)
            removed.append(lab_id)
    return removed


# --- the backend ----------------------------------------------------------------------------


class DockerBackend:
    """Brings topologies up as docker networks and containers."""

    name = "docker"

    def __init__(
        self,
        client: Any | None = None,
        *,
        image: str | None = None,
        command: CommandFactory = node_command,
        progress: Progress = _say_nothing,
        detached: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        readiness: ReadinessFactory = role_checks,
    ) -> None:
        """Args:
        client: a `docker.DockerClient` (default: from the environment, on first use).
        image: the node image (default: `build_node_image`, found or built on first use).
        command: what each node's container runs.
        progress: receives a line per slow step (image build).
        detached: labs outlive this process (`smtplab up`): no owner pid in their
            labels, no removal at exit; `smtplab down` removes them.
        ready_timeout: seconds each readiness check may take before `up` fails.
        readiness: the checks per node (`lab.runtime.readiness.role_checks`); pass
            others together with a `command` that runs something else.
        """
        self._client = client
        self.image = image
        self.command = command
        self.progress = progress
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.readiness = readiness

    @property
    def client(self) -> Any:
        """The docker client, made on first use."""
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=ENGINE_TIMEOUT)
        return self._client

    def available(self) -> str | None:
        """None when an engine answers, else why not."""
        try:
            import docker

            probe = self._client or docker.from_env(timeout=5)
            probe.ping()
        except Exception as error:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            return (
                f"no Docker engine answers at {where} ({_first_line(error)}); "
                "start one (.ci/install-docker does) or use the local backend"
            )
        self._client = probe
        return None

    def plan(self, scenario: Scenario) -> Topology:
        """`scenario` resolved onto subnets that are free on this host."""
        return resolve(scenario, docker_subnets(scenario, self.client), data_root=DATA_ROOT)

    async def up(self, topology: Topology) -> DockerLab:
        """Create and start a lab; on failure everything created so far is removed.

        Raises:
            LabStartError: a subnet collides, the engine refused, or a node was not ready.
        """
        return await asyncio.to_thread(self.up_sync, topology)

    def up_sync(self, topology: Topology) -> DockerLab:
        """`up` for callers without an event loop.

        When another lab took one of the planned subnets in the meantime (two
        runs planning at once), the scenario is planned afresh, up to
        `SUBNET_ATTEMPTS` times, unless its subnets are pinned: use the returned
        lab's `topology`, not the one passed in.
        """
        image = self.ensure_image()
        pinned = _pinned(topology)
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            try:
                return self._up_once(topology, image)
            except _SubnetTaken:
                if pinned or attempt == SUBNET_ATTEMPTS:
                    raise
                topology = self.plan(topology.scenario)
        raise AssertionError("unreachable")

    def ensure_image(self) -> str:
        """The node image's tag: found or built once (with progress), then remembered."""
        if self.image is None:
            from lab.runtime.image import build_node_image

            self.image = build_node_image(None, self.progress, client=self.client)
        return self.image

    def _up_once(self, topology: Topology, image: str) -> DockerLab:

        client = self.client
        lab_id = f"{topology.scenario.id[:24]}-{secrets.token_hex(3)}"
        # Labs of this process planned at the same time would all pick the same free
        # subnets: checking and creating networks is one step per process. (Another
        # process may still win a race: the engine refuses, and `up_sync` plans again.)
        with NETWORK_LOCK:
            taken = host_taken_networks(client)
            clashes = [
                f"network {network.name}: {network.subnet} {clash}"
                for network in topology.networks.values()
                if (clash := _clash(network.subnet, taken)) is not None
            ]
            if clashes and _pinned(topology):
                raise _SubnetTaken("; ".join(clashes))
            if clashes:
                topology = self.plan(topology.scenario)
            lab = DockerLab(
                client,
                topology,
                lab_id,
                lab_state_dir(lab_id),
                image,
                detached=self.detached,
                ready_timeout=self.ready_timeout,
                readiness=self.readiness,
            )
            # Registered while it is being made, so that an interrupted `up` cleans up.
            with _LIVE_LOCK:
                _LIVE[lab_id] = lab
            try:
                lab.create_networks()
            except BaseException as error:
                lab.down_sync()
                raise _engine_error(lab_id, error) from error
        try:
            lab.create(self.command)
            if self.detached:
                with _LIVE_LOCK:
                    _LIVE.pop(lab_id, None)
        except BaseException as error:
            lab.down_sync()
            raise _engine_error(lab_id, error) from error
        return lab


def _pinned(topology: Topology) -> bool:
    return any(network.subnet for network in topology.scenario.networks.values())


def _engine_error(lab_id: str, error: BaseException) -> BaseException:
    """What `up` raises for `error`: subnet races retried, engine errors as LabStartError."""
    import docker.errors

    if isinstance(error, docker.errors.APIError) and "overlaps" in str(error):
        return _SubnetTaken(f"lab {lab_id}: {_first_line(error)}")
    if isinstance(error, docker.errors.DockerException):
        return LabStartError(f"lab {lab_id}: {_first_line(error)}")
    return error


class _SubnetTaken(LabStartError):
    """A planned subnet is in use by the time the lab is created."""


if TYPE_CHECKING:

    def _conforms(lab: DockerLab, backend: DockerBackend) -> tuple[Lab, Backend]:
        """mypy checks here that both implement the runtime protocols."""
        return lab, backend


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
