"""A running docker lab (`DockerLab`): its containers and networks, what runs where, and
its lifecycle from creating networks to taking everything down again.

A lab is up when every node passed its readiness checks
(`lab.runtime.readiness`: greeting read, SOA answered, `router-ready`, the
init script's "routes set"), never after a sleep; a failure carries the
node's container log and events. Each lab's files (node configs, TLS files,
node data dirs) live on the host under `<state>/docker/<lab id>`, bind-mounted
at `/var/lib/smtplab` (`lab.runtime.docker.files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from lab.errors import LabError
from lab.nodes.config import MailServerConfig
from lab.nodes.events import read_events
from lab.nodes.postfix.maillog import delivery_events as maillog_events
from lab.runtime import labels
from lab.runtime.base import Endpoint
from lab.runtime.colleagues import ColleagueSessions
from lab.runtime.docker import live
from lab.runtime.docker.commands import LAB_UP_FILE, CommandFactory, customer_gateways
from lab.runtime.docker.containers import ContainerTarget, create_container
from lab.runtime.docker.engine import in_parallel, off_loop
from lab.runtime.docker.files import (
    ROUTERS_READY,
    config_path,
    routes_set_file,
    run_file,
    signal_file,
    write_node_files,
)
from lab.runtime.docker.namespaces import NamespaceConnector, query_dns
from lab.runtime.docker.networks import create_bridge
from lab.runtime.docker.publish import LOOPBACK, publish
from lab.runtime.docker.records import remove_lab
from lab.runtime.readiness import FileCreated, WaitStrategy, role_checks, wait_all
from lab.scenario.vocabulary import MtaSoftware
from lab.topology import NetworkPlan, NodePlan, Topology

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from lab.scenario.model import MailSettings
    from lab.smtp.result import SendResult
    from lab.wire.capture import Capture

# A node program needs a fraction of a CPU second to start, but a class of labs starting
# together on two cores queues a hundred of them (and the engine's own work): a router took
# over 15 s from its start to its rules with six labs starting on a loaded host. A process
# that exits is noticed at once, whatever this says; only a hung node waits it out.
READY_TIMEOUT = 60.0
# Postfix starts a dozen processes and checks its queue before it listens (and postgrey is
# a perl daemon): seconds on an idle host, far more on a busy one.
POSTFIX_READY_TIMEOUT = 90.0

# What must hold before a node counts as up, given what its container runs.
ReadinessFactory = Callable[[NodePlan, Topology], list[WaitStrategy]]


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
        self.colleagues: ColleagueSessions | None = None  # the office's other machines
        self.containers: dict[str, str] = {}  # node -> container id
        self.networks: dict[str, str] = {}  # scenario network -> docker network id
        self._pids: dict[str, int] = {}
        # Seconds each step of `up` took ("networks", "start", "routers ready", ...), for
        # the benchmarks.
        self.timings: dict[str, float] = {}
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
    def client(self) -> Any:
        """The docker client the lab was made with."""
        return self._client

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

    def object_labels(self, **keys: str) -> dict[str, str]:
        """The labels of one object of this lab (`keys`: its node or network)."""
        return labels.create_labels(
            self._id, scenario=self._topology.scenario.id, detached=self.detached, **keys
        )

    # -- what runs where ----------------------------------------------------------------------

    def pid(self, node: str) -> int:
        """The host pid of `node`'s container's main process."""
        if node not in self._pids:
            state = self._client.api.inspect_container(self.containers[node])["State"]
            if not state.get("Running"):
                raise LabError(f"node {node} is not running ({state.get('Status')})")
            self._pids[node] = int(state["Pid"])
        return self._pids[node]

    def known_pid(self, node: str) -> int | None:
        """The host pid of `node`'s main process if already seen running, else None."""
        return self._pids.get(node)

    def state(self, node: str) -> dict[str, Any]:
        """The `State` part of `docker inspect` for `node`'s container."""
        state: dict[str, Any] = self._client.api.inspect_container(self.containers[node])["State"]
        if state.get("Running") and state.get("Pid"):
            self._pids.setdefault(node, int(state["Pid"]))
        return state

    def exec(self, node: str, command: list[str]) -> tuple[int, str]:
        """Run `command` in `node`'s container; (exit code, stdout and stderr)."""
        api = self._client.api
        exec_id = api.exec_create(self.containers[node], command, stdout=True, stderr=True)
        output = api.exec_start(exec_id, demux=False)
        code = api.exec_inspect(exec_id)["ExitCode"]
        return int(code), (output or b"").decode(errors="replace")

    def exec_detached(self, node: str, command: list[str]) -> None:
        """Start `command` in `node`'s container and return at once (it runs on)."""
        api = self._client.api
        exec_id = api.exec_create(self.containers[node], command, stdout=False, stderr=False)
        api.exec_start(exec_id, detach=True)

    def capture(self, router: str) -> AbstractAsyncContextManager[Capture]:
        """tcpdump on `router`'s inside interface while the block runs."""
        from lab.runtime.docker.capture import tcpdump

        return tcpdump(self, router)

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
        return await asyncio.to_thread(
            query_dns, self.pid(node), str(dns_node.address), name, rdtype
        )

    async def send(self, settings: MailSettings) -> SendResult:
        """Run the mail program once in the client's container and read its JSON result."""
        from lab.smtp.result import SendResult

        client = self._topology.client
        # The settings (with the password) go through a file only root and the
        # container can read, never the command line: `ps` and `docker inspect` show that.
        text = settings.model_dump_json(by_alias=True)
        with run_file(self.host_dir, "settings", text) as settings_file:
            command = [
                "python3", "-m", "lab.nodes", "client", config_path(client.name),
                "--settings-file", str(settings_file),
            ]  # fmt: skip
            code, output = await off_loop(functools.partial(self.exec, client.name, command))
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
        """The node's event log; a Postfix node's delivery events are read from its maillog
        (`lab.nodes.postfix.maillog`), as Postfix writes no JSON events of its own."""
        events = read_events(self.data_dir(node))
        config = self._topology.nodes[node].config if node in self._topology.nodes else None
        if not isinstance(config, MailServerConfig) or config.software is not MtaSoftware.POSTFIX:
            return events
        from docker.errors import DockerException

        try:
            output: bytes = self._client.api.logs(self.containers[node], timestamps=True)
        except (KeyError, DockerException):  # not created yet, or already gone
            return events
        from_maillog = maillog_events(output.decode(errors="replace"))
        return sorted([*events, *from_maillog], key=lambda event: float(event.get("ts", 0.0)))

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
            self._endpoints = await off_loop(functools.partial(publish, self, host))
        return self.endpoints()

    def logs(self, node: str, tail: int = 50) -> str:
        """The last lines the node's container wrote to stdout and stderr."""
        output: bytes = self._client.api.logs(self.containers[node], tail=tail)
        return output.decode(errors="replace")

    # -- lifecycle ----------------------------------------------------------------------------

    def create_networks(self) -> None:
        """One docker network per scenario network, on the planned subnets (reserved by
        the caller), created concurrently."""

        def create(network: NetworkPlan) -> None:
            self.networks[network.name] = create_bridge(
                self._client.api,
                self.network_name(network.name),
                network.subnet,
                network.gateway,
                # The customer's side is an ordinary bridge (routing through the router
                # container needs it, see `lab.runtime.docker.networks`); the rest has no
                # way out.
                internal=not network.customer_side,
                labels=self.object_labels(network=network.name),
            )

        with self._timed("networks"):
            in_parallel(
                [functools.partial(create, network) for network in self._topology.networks.values()]
            )

    def create(self, command: CommandFactory) -> None:
        """Create and start the containers (networks exist), each started as soon as it is
        created, and wait until every node passes its readiness checks.

        A program behind a router may send as soon as it starts: its container starts
        with the others, but its init script holds the program until the routers are
        ready (the runtime then creates the `ROUTERS_READY` signal file). Everything else
        (servers on the outside networks, the idle client) runs at once.
        """
        with self._timed("files"):
            self._ca_file = write_node_files(self._topology, self.host_dir)
        gateways = customer_gateways(self._topology)
        nodes = list(self._topology.nodes.values())
        behind = [
            node
            for node in nodes
            if node.name in gateways and node.kind != "client" and node.running
        ]
        routers = [node for node in nodes if node.kind == "router"]
        with self._timed("create and start"):
            # Routers first in line: the rest of the lab waits on them.
            in_parallel(
                [
                    functools.partial(
                        self._create_and_start,
                        node,
                        command,
                        gateways.get(node.name),
                        node in behind,
                    )
                    for node in [*routers, *(node for node in nodes if node.kind != "router")]
                ]
            )
        others = [node for node in nodes if node.kind != "router" and node not in behind]
        asyncio.run(self._wait_ready(routers, behind, others))
        # Servers that come back later count their downtime from now, as on local.
        for node in nodes:
            if node.back_after is not None:
                self.exec(node.name, ["touch", LAB_UP_FILE])

    @contextlib.contextmanager
    def _timed(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[step] = time.perf_counter() - started

    def _create_and_start(
        self, node: NodePlan, command: CommandFactory, gateway: IPv4Address | None, hold: bool
    ) -> None:
        self.containers[node.name] = create_container(self, node, command, gateway, hold=hold)
        self._client.api.start(self.containers[node.name])

    def checks(self, node: NodePlan) -> list[WaitStrategy]:
        """What must hold before `node` counts as up (`lab.runtime.readiness`)."""

        found = self.readiness(node, self._topology)
        if node.kind != "router" and not found:
            # Routes set, NET_ADMIN dropped. A node whose program answers a check passed
            # this already: the init script starts the program only afterwards.
            found.append(
                FileCreated(routes_set_file(node.name, self.host_dir), "routes set by its init")
            )
        timeout = self.ready_timeout
        if (
            isinstance(node.config, MailServerConfig)
            and node.config.software is MtaSoftware.POSTFIX
        ):
            timeout = max(timeout, POSTFIX_READY_TIMEOUT)
        return [check.with_startup_timeout(timeout) for check in found]

    async def _wait_ready(
        self, routers: list[NodePlan], behind: list[NodePlan], others: list[NodePlan]
    ) -> None:
        """Every check of every node, concurrently, except that the nodes `behind` routers
        run their programs (and are checked) once the routers are ready (never a fixed
        sleep).

        Raises:
            LabStartError: a node exited or timed out; with its log.
        """
        started = time.perf_counter()

        def waits(nodes: list[NodePlan]) -> Awaitable[None]:
            return wait_all(
                (ContainerTarget(self, node.name), check)
                for node in nodes
                for check in self.checks(node)
            )

        meanwhile = asyncio.ensure_future(waits(others))
        try:
            await waits(routers)
            self.timings["routers ready"] = time.perf_counter() - started
            signal_file(ROUTERS_READY, self.host_dir).touch()
            await waits(behind)
            await meanwhile
        finally:
            meanwhile.cancel()
            await asyncio.gather(meanwhile, return_exceptions=True)
        self.timings["all ready"] = time.perf_counter() - started

    def down_sync(self) -> None:
        """Remove containers, networks and the host directory; idempotent."""
        if self._down:
            return
        remove_lab(self._client, self._id, self.host_dir)
        self._down = True
        live.forget(self._id)

    async def down(self) -> None:
        """Stop every node and remove everything the lab created; idempotent."""
        if self.colleagues is not None:
            self.colleagues.close()
        await off_loop(self.down_sync)

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


def _mask(text: str, settings: MailSettings) -> str:
    """`text` with the AUTH password replaced, should a program have printed it."""
    password = settings.auth.password if settings.auth is not None else ""
    return text.replace(password, "********") if password else text
