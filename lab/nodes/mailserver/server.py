"""The relay and mx node programs: start every listener of a server in one event loop.

`start` wires one configured server together (event log, mailbox store,
the relay's outbound queue, recipient policy, DNS checks, rate limit) and
opens its listeners (`listener.py`); the running server stops them all and
flushes what must be durable. `serve` is what `python -m lab.nodes relay|mx
config.json` runs. The local backend calls `start` for every server of a lab
in its own loop.

Where the rest lives: the SMTP engine and its protocol-level additions in
`protocol.py` and `faults.py`, sockets in `listener.py` and `acceptor.py`,
policy in `handler.py` (with `recipients.py`, `rate_limit.py`, `checks.py`,
`auth.py`), accepted messages in `ingest.py`, mailboxes in `store.py` and the
relay's outbound queue in `queue.py`.
"""

from __future__ import annotations

import asyncio
import importlib
import os
from typing import Protocol, cast

from lab.net import Connector, DirectConnector
from lab.nodes.config import MailServerConfig
from lab.nodes.events import EventLog
from lab.nodes.mailserver import legacy_tls
from lab.nodes.mailserver.auth import UserTable
from lab.nodes.mailserver.checks import ClientChecks
from lab.nodes.mailserver.context import MailContext, RelayQueue
from lab.nodes.mailserver.limits import SessionGate, quiet_accept_exhaustion, raise_fd_limit
from lab.nodes.mailserver.listener import Listener
from lab.nodes.mailserver.protocol import LabSMTP
from lab.nodes.mailserver.rate_limit import RateLimiter
from lab.nodes.mailserver.recipients import RecipientPolicy
from lab.nodes.mailserver.store import MailStore
from lab.nodes.resolver import make_resolver

MAILBOXES_DIR = "mailboxes"


class QueueFactory(Protocol):
    """Builds the relay's outbound queue; `queue.OutboundQueue` itself is one."""

    def __call__(
        self,
        config: MailServerConfig,
        *,
        store: MailStore,
        connector: Connector,
        events: EventLog,
    ) -> RelayQueue:
        """A queue for `config`, not yet started."""
        ...


class RunningMailServer:
    """A started relay or mx (satisfies `lab.nodes.base.RunningNode`)."""

    def __init__(self, context: MailContext, *, reuse_port: bool = False) -> None:
        self.context = context
        self.reuse_port = reuse_port
        self.config = context.config
        self.store = context.store
        self.events = context.events
        self._listeners: list[Listener] = []
        self._connections: set[LabSMTP] = set()
        self._ports: dict[int, int] = {}
        self._listening: set[int] = set()
        self._queue_started = False
        self._stopped = False

    @property
    def ports(self) -> dict[int, int]:
        """Lab port -> bound port."""
        return dict(self._ports)

    async def _start(self) -> None:
        config = self.config
        if self.context.queue is not None:
            await self.context.queue.start()
            self._queue_started = True
        authenticator = UserTable(config.users, self.events)
        for listener_config in config.listeners:
            tls = (
                legacy_tls.listener_context(config.tls, listener_config.tls_versions)
                if config.tls
                else None
            )
            listener = Listener(
                self.context, listener_config, tls, authenticator, self._connections
            )
            self._listeners.append(listener)
            self._ports[listener_config.port] = await listener.open(
                config.listen_host, reuse_port=self.reuse_port
            )
            self._listening |= listener.listening_fds()
        quiet_accept_exhaustion(asyncio.get_running_loop(), self._listening, self.events)
        self.events.emit(
            "started",
            role=config.role,
            hostname=config.hostname,
            ports=self._ports,
            pid=os.getpid(),
        )

    async def stop(self) -> None:
        """Stop listening, drop open sessions, stop the queue, flush the store; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._listening.clear()
        for listener in self._listeners:
            await listener.close()
        connections = list(self._connections)
        for connection in connections:
            connection.abort()
        tasks = [c.task for c in connections if c.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for listener in self._listeners:
            await listener.wait_closed()
        try:
            if self._queue_started and self.context.queue is not None:
                await self.context.queue.stop()
            await self.store.close()
        finally:
            self.events.emit("stopped")
            self.events.close()


def _queue_for(
    config: MailServerConfig,
    store: MailStore,
    connector: Connector,
    events: EventLog,
    factory: QueueFactory | None,
) -> RelayQueue | None:
    """The relay's outbound queue; an mx has none."""
    if config.role != "relay":
        return None
    if factory is None:
        if config.queue is None:
            return None
        # Imported by name, lazily: only relays need it, and an mx must start without it.
        module = importlib.import_module("lab.nodes.mailserver.queue")
        factory = cast("QueueFactory", module.OutboundQueue)
    return factory(config, store=store, connector=connector, events=events)


async def start(
    config: MailServerConfig,
    *,
    connector: Connector,
    queue_factory: QueueFactory | None = None,
    gate: SessionGate | None = None,
    reuse_port: bool = False,
) -> RunningMailServer:
    """Start every listener of a relay or mx; returns once all of them listen.

    Args:
        config: the node's generated configuration.
        connector: how the relay's queue opens outbound connections.
        queue_factory: builds the outbound queue (default: `queue.OutboundQueue`
            for a relay with a `queue` section); tests pass a recording fake.
        gate: the session caps; by default this process's own. Worker processes
            pass the node's shared one (`shared_gate.py`).
        reuse_port: listen with SO_REUSEPORT beside the node's other workers.

    Raises:
        ValueError: an implicit-TLS listener without a certificate.
        OSError: a port could not be bound.
    """
    loop = asyncio.get_running_loop()
    events = EventLog(config.data_dir, config.name, max_bytes=config.events_max_bytes)
    store = MailStore(config.data_dir / MAILBOXES_DIR)
    try:
        queue = _queue_for(config, store, connector, events, queue_factory)
    except BaseException:
        events.close()
        raise
    policy = RecipientPolicy(config, can_relay=queue is not None, clock=loop.time)
    checks = None
    if config.checks.enabled and config.resolver is not None:
        checks = ClientChecks(config.checks, make_resolver(config.resolver))
    limiter = RateLimiter(config.rate_limit, loop.time) if config.rate_limit else None
    if gate is None:
        limits = config.limits
        gate = SessionGate(limits.connections, limits.per_client, raise_fd_limit())
    context = MailContext(
        config, store, events, policy, queue, checks=checks, limiter=limiter, gate=gate
    )
    server = RunningMailServer(context, reuse_port=reuse_port)
    try:
        await server._start()
    except BaseException:
        await server.stop()
        raise
    return server


async def serve(config: MailServerConfig) -> None:
    """Run the node until cancelled (`python -m lab.nodes relay|mx config.json`)."""
    running = await start(config, connector=DirectConnector())
    try:
        await asyncio.Event().wait()
    finally:
        await running.stop()
