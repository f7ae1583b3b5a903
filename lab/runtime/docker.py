"""The docker backend: one lab = its own docker networks and one container per node.

Layout (measured on Engine 20.10 with the host's bridge netfilter; see
DESIGN.md): the customer-side networks (a router's inside) are ordinary
bridges, every other lab network is `internal` (no route off the host); a
router container has `NET_ADMIN`, IP forwarding on, its own default route
deleted and iptables rules from `lab.nodes.router.router_rules`; customer
nodes get their default route replaced by the router's inside address, and
all other nodes lose theirs, before their program starts; then they lose
`NET_ADMIN`. So no lab node has a route to anything but lab subnets.

Everything created carries the labels of `lab.runtime.labels`: `down`, the
per-process `atexit` hook and `reap` select by label, never by name. When
`up` fails halfway, whatever it created so far is removed before the error
propagates.

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
import json
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lab.config import settings
from lab.errors import LabError, LabStartError
from lab.net import ConnectRefused, ConnectTimeout, HostUnreachable, Streams
from lab.nodes.events import read_events
from lab.runtime import labels
from lab.runtime.base import Endpoint
from lab.runtime.subnets import NEVER, choose_subnets, host_taken_networks
from lab.topology import NodePlan, Topology, resolve

if TYPE_CHECKING:
    from lab.runtime.base import Backend, Lab
    from lab.scenario.model import MailSettings, Scenario
    from lab.smtp.client import SendResult

# Where the lab's host directory appears in every container; node data dirs are below it.
DATA_ROOT = Path("/var/lib/smtplab")
# Node configs live beside the data dirs; "_" cannot start a node name, so no clash.
CONFIG_DIR = "_config"
TLS_DIR = "_tls"  # the lab CA and every server's certificate and key
IDLE_COMMAND = ["sleep", "infinity"]
READY_TIMEOUT = 15.0
RESOLVE_TIMEOUT = 2.0
SUBNET_ATTEMPTS = 3
ENGINE_TIMEOUT = 60  # seconds per API call; image builds stream, so they are not cut short

CommandFactory = Callable[[NodePlan, str], list[str]]
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
exec setpriv --bounding-set=-net_admin -- "$@"
"""


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


# --- a running lab --------------------------------------------------------------------------

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
        self, client: Any, topology: Topology, lab_id: str, host_dir: Path, image: str
    ) -> None:
        self._client = client
        self._topology = topology
        self._id = lab_id
        self.host_dir = host_dir
        self.image = image
        self.containers: dict[str, str] = {}  # node -> container id
        self.networks: dict[str, str] = {}  # scenario network -> docker network id
        self._pids: dict[str, int] = {}
        self._ca_file: Path | None = None
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
        command = [
            "python3", "-m", "lab.nodes", "client", _config_path(client.name),
            "--settings", settings.model_dump_json(by_alias=True),
        ]  # fmt: skip
        code, output = await asyncio.to_thread(self.exec, client.name, command)
        lines = [line for line in output.splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise LabError(f"the mail program failed in {client.name} (exit {code}): {output}")
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
        """Not yet: published ports need forwarders (internal networks cannot publish)."""
        return []

    def logs(self, node: str, tail: int = 50) -> str:
        """The last lines the node's container wrote to stdout and stderr."""
        output: bytes = self._client.api.logs(self.containers[node], tail=tail)
        return output.decode(errors="replace")

    # -- lifecycle ----------------------------------------------------------------------------

    def create(self, command: CommandFactory) -> None:
        """Create networks and containers, start routers, wait for them, start the rest."""
        self._write_files()
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
                labels=labels.create_labels(
                    self._id, network=network.name, scenario=self._topology.scenario.id
                ),
                check_duplicate=True,
            )
            self.networks[network.name] = created["Id"]
        gateways = customer_gateways(self._topology)
        for node in self._topology.nodes.values():
            self._create_container(node, command, gateways.get(node.name))
        routers = [node for node in self._topology.nodes.values() if node.kind == "router"]
        others = [node for node in self._topology.nodes.values() if node.kind != "router"]
        # Routers first, and ready, before anything behind them can send a packet.
        self._start_all(routers)
        for router in routers:
            self._wait_router(router.name)
        self._start_all(others)

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
            labels=labels.create_labels(
                self._id, node=node.name, scenario=self._topology.scenario.id
            ),
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
        if not nodes:
            return
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
            futures = [
                pool.submit(self._client.api.start, self.containers[node.name]) for node in nodes
            ]
            for future in futures:
                future.result()

    def _wait_router(self, node: str, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events(node):
                if event.get("event") == "router-ready":
                    return
                if event.get("event") == "router-failed":
                    raise LabStartError(
                        f"router {node} failed: {event.get('error')}\n{self.logs(node)}"
                    )
            state = self._client.api.inspect_container(self.containers[node])["State"]
            if not state.get("Running"):
                raise LabStartError(
                    f"router {node} exited ({state.get('ExitCode')}):\n{self.logs(node)}"
                )
            if time.monotonic() > deadline:
                raise LabStartError(
                    f"router {node} not ready after {timeout:g} s:\n{self.logs(node)}"
                )
            time.sleep(0.05)

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

    if containers:
        with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(containers))) as pool:
            for future in [pool.submit(remove_container, c["Id"]) for c in containers]:
                future.result()
    for network in api.networks(filters=wanted):
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_network(network["Id"])
    host_dir = host_dir or lab_state_dir(lab_id)
    if host_dir.exists():
        shutil.rmtree(host_dir, ignore_errors=True)


def lab_state_dir(lab_id: str) -> Path:
    """The host directory bind-mounted into lab `lab_id`'s containers."""
    return settings.state_dir / "labs" / lab_id


def list_labs(client: Any) -> dict[str, dict[str, str]]:
    """Lab id -> the labels of one of its objects, for every labelled container and network."""
    found: dict[str, dict[str, str]] = {}
    selector = labels.selector(labels.LAB)
    for container in client.api.containers(all=True, filters=selector):
        found.setdefault(container["Labels"][labels.LAB], container["Labels"])
    for network in client.api.networks(filters=selector):
        found.setdefault(network["Labels"][labels.LAB], network["Labels"])
    return found


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
    ) -> None:
        """Args:
        client: a `docker.DockerClient` (default: from the environment, on first use).
        image: the node image (default: `build_node_image`, found or built).
        command: what each node's container runs.
        progress: receives a line per slow step (image build).
        """
        self._client = client
        self.image = image
        self.command = command
        self.progress = progress

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
        from lab.runtime.image import build_node_image

        image = self.image or build_node_image(None, self.progress, client=self.client)
        pinned = any(network.subnet for network in topology.scenario.networks.values())
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            try:
                return self._up_once(topology, image)
            except _SubnetTaken:
                if pinned or attempt == SUBNET_ATTEMPTS:
                    raise
                topology = self.plan(topology.scenario)
        raise AssertionError("unreachable")

    def _up_once(self, topology: Topology, image: str) -> DockerLab:
        import docker.errors

        client = self.client
        taken = host_taken_networks(client)
        for network in topology.networks.values():
            clash = _clash(network.subnet, taken)
            if clash is not None:
                raise _SubnetTaken(f"network {network.name}: {network.subnet} {clash}")
        lab_id = f"{topology.scenario.id[:24]}-{secrets.token_hex(3)}"
        lab = DockerLab(client, topology, lab_id, lab_state_dir(lab_id), image)
        with _LIVE_LOCK:
            _LIVE[lab_id] = lab
        try:
            lab.create(self.command)
        except BaseException as error:
            lab.down_sync()
            if isinstance(error, docker.errors.APIError) and "overlaps" in str(error):
                raise _SubnetTaken(f"lab {lab_id}: {_first_line(error)}") from error
            if isinstance(error, docker.errors.DockerException):
                raise LabStartError(f"lab {lab_id}: {_first_line(error)}") from error
            raise
        return lab


class _SubnetTaken(LabStartError):
    """A planned subnet is in use by the time the lab is created."""


if TYPE_CHECKING:

    def _conforms(lab: DockerLab, backend: DockerBackend) -> tuple[Lab, Backend]:
        """mypy checks here that both implement the runtime protocols."""
        return lab, backend


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
