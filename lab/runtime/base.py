"""The runtime interface: what a backend must offer so the CLI, the diagnosis engine,
the TUI and the tests never care whether nodes are containers or coroutines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from lab.net import Connector
    from lab.scenario.model import MailSettings, Scenario
    from lab.smtp.result import SendResult
    from lab.topology import Topology
    from lab.wire.capture import Capture


@dataclass(frozen=True)
class Endpoint:
    """A port a user's own application can reach on this host, and what it stands for."""

    node: str
    lab_address: str
    lab_port: int
    host: str
    port: int
    note: str = ""


class Lab(Protocol):
    """A running lab."""

    @property
    def id(self) -> str:
        """Unique id; also the value of the `smtplab.lab` label on docker."""
        ...

    @property
    def backend(self) -> str:
        """'local' or 'docker'."""
        ...

    @property
    def topology(self) -> Topology:
        """What is running."""
        ...

    @property
    def ca_file(self) -> Path | None:
        """The lab CA certificate (PEM) that signs every server certificate."""
        ...

    def connector_for(self, node: str) -> Connector:
        """Opens TCP connections from where `node` stands (policy and NAT included)."""
        ...

    async def resolve(self, node: str, name: str, rdtype: str = "A") -> list[str]:
        """Ask the lab DNS, from `node`'s vantage point, for `name`'s records as text.

        Raises:
            lab.nodes.resolver.DnsLookupError: with `.permanent` (NXDOMAIN) or not.
        """
        ...

    async def send(self, settings: MailSettings) -> SendResult:
        """Run the customer's mail program once with `settings`, from the client node."""
        ...

    def mailbox(self, node: str, address: str) -> list[bytes]:
        """Raw messages in `address`'s mailbox on mail server `node`, oldest first."""
        ...

    def events(self, node: str) -> list[dict[str, Any]]:
        """The decisions `node` logged so far."""
        ...

    def data_dir(self, node: str) -> Path:
        """Where the host can read the node's files."""
        ...

    def endpoints(self) -> list[Endpoint]:
        """Entry points opened by `publish_endpoints` so far."""
        ...

    async def publish_endpoints(self, host: str = "127.0.0.1") -> list[Endpoint]:
        """Open entry points on `host` for a developer's own application: each behaves as
        the server port would for a machine in the customer's network (same ISP policy)."""
        ...

    def capture(self, router: str) -> AbstractAsyncContextManager[Capture]:
        """Record what crosses `router` while the block runs (`lab.wire`): packets where
        there are packets (docker), the emulated network's decisions where there are none."""
        ...

    async def down(self) -> None:
        """Stop every node and remove everything the lab created; idempotent."""
        ...


class Backend(Protocol):
    """Brings topologies up."""

    name: str

    def available(self) -> str | None:
        """None when usable here, else why not (shown to the user)."""
        ...

    def plan(self, scenario: Scenario) -> Topology:
        """Resolve `scenario` for this backend (e.g. subnets free on this host)."""
        ...

    async def up(self, topology: Topology) -> Lab:
        """Start every node and wait until each is ready.

        Raises:
            LabStartError: a node did not become ready; everything started is removed.
        """
        ...


@asynccontextmanager
async def running_lab(scenario: Scenario, backend: Backend) -> AsyncIterator[Lab]:
    """A lab that is taken down when the block ends, however it ends."""
    lab = await backend.up(backend.plan(scenario))
    try:
        yield lab
    finally:
        await lab.down()
