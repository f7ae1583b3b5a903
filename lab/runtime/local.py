"""The local backend: every node of a topology in this process, on 127.0.0.1.

The node programs are the same as in containers; only the network is
emulated, at the connect function. `path_verdict` decides each connection
from the topology, and the kernel then does the rest for real:

- allow: connect to the node's real port and send a PROXY v1 header so the
  server sees the emulated peer address (after NAT, as through the ISP);
- drop: connect to a listener whose accept queue is full, so the kernel
  drops the SYN and the client waits out its own connect timeout;
- reject: connect to a bound socket that does not listen: a real RST.

A router with SMTP inspection on the port gets an in-process inspector
(`lab.nodes.inspection`) between the client and the server, a router with an
impaired line the line's delay, bandwidth and resets (`lab.nodes.line`). The
emulated network itself is `lab.runtime.emulated`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import LabStartError
from lab.nodes.config import ClientConfig, DnsConfig, MailServerConfig, ResolverConfig
from lab.nodes.events import read_events
from lab.runtime.base import Endpoint
from lab.runtime.colleagues import ColleagueSessions, open_colleague_sessions
from lab.runtime.emulated import (
    LOOPBACK,
    EmulatedConnector,
    EmulatedNetwork,
)
from lab.scenario.model import ListenerTls, MailServerNode
from lab.topology import Action, Topology, path_verdict, resolve
from lab.wire.capture import Capture

if TYPE_CHECKING:
    from lab.nodes.base import RunningNode
    from lab.scenario.model import MailSettings, Scenario
    from lab.smtp.result import SendResult

READY_TIMEOUT = 5.0


class LocalLab:
    """A running local lab: nodes as tasks of this event loop."""

    backend = "local"

    def __init__(self, topology: Topology, root: Path, *, keep_files: bool = False) -> None:
        self._id = f"local-{topology.scenario.id}-{uuid.uuid4().hex[:6]}"
        self._topology = topology
        self.root = root
        self.network = EmulatedNetwork(topology)
        self.nodes: dict[str, RunningNode] = {}
        self.configs: dict[str, Any] = {}
        self.dns_port: int | None = None
        self.ca_file: Path | None = None
        self._forwarders: list[asyncio.Server] = []
        self._endpoints: list[Endpoint] = []
        self._keep_files = keep_files
        self._down = False
        self.colleagues: ColleagueSessions | None = None  # the office's other machines

    @property
    def id(self) -> str:
        """Unique lab id."""
        return self._id

    @property
    def topology(self) -> Topology:
        """What is running."""
        return self._topology

    @asynccontextmanager
    async def capture(self, router: str) -> AsyncIterator[Capture]:
        """What the emulated network decided at `router` while the block runs (no packets
        exist here: one flow per connection attempt, with its fate)."""
        capture = Capture(router)
        mark = time.time()
        try:
            yield capture
        finally:
            capture.flows = [record.flow() for record in self.network.wire.since(mark, router)]

    def connector_for(self, node: str) -> EmulatedConnector:
        """Connections from `node`'s vantage point."""
        return self.network.connector_for(node)

    def resolver_config(self) -> ResolverConfig | None:
        """The lab DNS as reachable from this process."""
        if self.dns_port is None:
            return None
        return ResolverConfig(nameserver=LOOPBACK, port=self.dns_port)

    async def resolve(self, node: str, name: str, rdtype: str = "A") -> list[str]:
        """Records of `name` from the lab DNS (A: addresses; MX: "10 mx.example.net.").

        Raises:
            lab.nodes.resolver.DnsLookupError: NXDOMAIN, no records, or a temporary failure.
        """
        from lab.nodes.resolver import (
            DnsTemporaryFailure,
            make_resolver,
            record_texts,
            resolve_addresses,
        )

        config = self.resolver_config()
        if config is None:
            raise DnsTemporaryFailure(name, rdtype, "this lab has no DNS server")
        resolver = make_resolver(config)
        if rdtype == "A":
            return await resolve_addresses(resolver, name)
        # As the docker backend's: the records as published (no implicit MX for a domain
        # without one); the diagnosis applies RFC 5321 §5.1 itself.
        return await record_texts(resolver, name, rdtype)

    async def send(self, settings: MailSettings) -> SendResult:
        """Run the customer's mail program once."""
        from lab.nodes.client import run_once

        client = self._topology.client
        config = self.configs[client.name]
        return await run_once(
            config, connector=self.connector_for(client.name), settings_override=settings
        )

    def data_dir(self, node: str) -> Path:
        """The node's files."""
        return self.root / node

    def mailbox(self, node: str, address: str) -> list[bytes]:
        """Raw messages in a mailbox."""
        from lab.nodes.mailserver.store import MailStore

        store = MailStore(self.data_dir(node) / "mailboxes")
        return [message.data for message in store.messages(address)]

    def events(self, node: str) -> list[dict[str, Any]]:
        """The node's event log."""
        return read_events(self.data_dir(node))

    def endpoints(self) -> list[Endpoint]:
        """Ports opened by `publish_endpoints`."""
        return list(self._endpoints)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Start DNS, then the mail servers, and prove each listener answers."""
        from lab.nodes import dns
        from lab.nodes.mailserver import server
        from lab.nodes.tls import issue_certificates

        topology = self._topology
        servers = {
            name: node.config
            for name, node in topology.nodes.items()
            if isinstance(node.config, MailServerConfig) and node.running
        }
        faults = {
            config.hostname: spec.certificate
            for name, config in servers.items()
            if isinstance(spec := topology.scenario.nodes[name], MailServerNode)
        }
        self.ca_file, tls_files = issue_certificates(self.root / "tls", faults)
        dns_plan = topology.dns
        if dns_plan is not None:
            assert isinstance(dns_plan.config, DnsConfig)
            dns_config = dns_plan.config.model_copy(
                update={
                    "listen_host": LOOPBACK,
                    "port": 0,
                    "data_dir": self.data_dir(dns_plan.name),
                }
            )
            dns_node = await dns.start(dns_config)
            self.nodes[dns_plan.name] = dns_node
            self.configs[dns_plan.name] = dns_config
            self.dns_port = dns_node.ports[53]
        resolver = self.resolver_config()
        for name, config in servers.items():
            local = config.model_copy(
                update={
                    "listen_host": LOOPBACK,
                    "data_dir": self.data_dir(name),
                    "proxy_protocol": True,
                    "listeners": [
                        lis.model_copy(update={"bind_port": 0}) for lis in config.listeners
                    ],
                    "tls": tls_files[config.hostname],
                    "resolver": resolver,
                    "ca_file": self.ca_file,
                }
            )
            self.configs[name] = local
            running = await server.start(local, connector=self.connector_for(name))
            self.nodes[name] = running
            address = str(topology.nodes[name].address)
            for lab_port, real_port in running.ports.items():
                self.network.ports[(address, lab_port)] = real_port
                self.network.proxied.add((address, lab_port))
        client = topology.client
        assert isinstance(client.config, ClientConfig)
        self.configs[client.name] = client.config.model_copy(
            update={
                "data_dir": self.data_dir(client.name),
                "resolver": resolver,
                "ca_file": self.ca_file,
            }
        )
        await self._check_ready(servers)
        self.network.downtimes.start(topology)

    async def _check_ready(self, servers: dict[str, MailServerConfig]) -> None:
        """Ready means a banner was read on every plain listener, never a sleep."""

        async def banner(name: str, port: int) -> None:
            address = str(self._topology.nodes[name].address)
            connector = self.connector_for(name)  # same network as itself: always allowed
            reader, writer = await connector.open_connection(address, port, timeout=READY_TIMEOUT)
            try:
                line = await asyncio.wait_for(reader.readline(), READY_TIMEOUT)
                if not line.startswith(b"220"):
                    raise LabStartError(f"{name}:{port} greeted with {line!r}")
                writer.write(b"QUIT\r\n")
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

        checks = [
            banner(name, listener.port)
            for name, config in servers.items()
            for listener in config.listeners
            if listener.tls is not ListenerTls.IMPLICIT
        ]
        try:
            await asyncio.gather(*checks)
        except (OSError, TimeoutError) as error:
            raise LabStartError(f"a node did not become ready: {error}") from error

    async def publish_endpoints(self, host: str = LOOPBACK) -> list[Endpoint]:
        """Open a port on `host` for every server port, as seen from the customer's network.

        Allowed paths get a forwarder; a dropped port is published as the
        blackhole (a real connect timeout), a rejected one as the closed port.
        """
        client = self._topology.client.name
        for name, node in self._topology.nodes.items():
            if node.kind == "dns":
                continue  # the lab DNS is not a mail endpoint
            for lab_port in node.tcp_ports:
                address = str(node.address)
                verdict = path_verdict(self._topology, client, address, lab_port)
                note = verdict.reason
                if verdict.action is Action.DROP:
                    port = self.network.blackhole.port
                elif verdict.action in (Action.REJECT, Action.UNREACHABLE, Action.NET_UNREACHABLE):
                    port = self.network.closed.port
                else:
                    port = await self._forwarder(host, client, address, lab_port)
                self._endpoints.append(Endpoint(name, address, lab_port, host, port, note))
        return self.endpoints()

    async def _forwarder(self, host: str, client: str, address: str, port: int) -> int:
        connector = self.connector_for(client)

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                upstream_reader, upstream_writer = await connector.open_connection(
                    address, port, timeout=READY_TIMEOUT
                )
            except OSError:
                writer.close()
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))

        server = await asyncio.start_server(relay, host, 0, backlog=1024)
        self._forwarders.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def down(self) -> None:
        """Stop everything and delete the lab's files; idempotent."""
        if self._down:
            return
        self._down = True
        if self.colleagues is not None:
            self.colleagues.close()
        for forwarder in self._forwarders:
            forwarder.close()
        for node in reversed(list(self.nodes.values())):
            with contextlib.suppress(Exception):
                await node.stop()
        self.network.close()
        if not self._keep_files:
            shutil.rmtree(self.root, ignore_errors=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


class LocalBackend:
    """Runs labs in this process."""

    name = "local"

    def __init__(
        self,
        root: Path | None = None,
        *,
        keep_files: bool = False,
        state_dir: Path | None = None,
    ) -> None:
        """Args:
        root: where fresh lab directories are made (default: the system temp dir).
        keep_files: leave a lab's directory behind when it goes down.
        state_dir: run every lab in this one directory and keep it: a lab started on it
            again resumes the relay's queue and the mailboxes (`smtplab up --state`).
        """
        self._root = root
        self._keep_files = keep_files or state_dir is not None
        self._state_dir = state_dir

    def available(self) -> str | None:
        """Always usable."""
        return None

    def plan(self, scenario: Scenario) -> Topology:
        """Default subnets: nothing is created on the host, so none can collide.

        Raises:
            SoftwareUnsupported: a mail server node is not the lab's own (`software:`).
        """
        from lab.runtime.software import refuse_foreign_software

        topology = resolve(scenario)
        refuse_foreign_software(topology)
        return topology

    async def up(self, topology: Topology) -> LocalLab:
        """Start a lab; on failure everything started so far is stopped."""
        if self._state_dir is not None:
            root = self._state_dir
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix=f"smtplab-{topology.scenario.id}-", dir=self._root))
        lab = LocalLab(topology, root, keep_files=self._keep_files)
        try:
            await lab.start()
            lab.colleagues = await open_colleague_sessions(lab)
        except BaseException:
            await lab.down()
            raise
        return lab
