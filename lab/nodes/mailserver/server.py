"""The relay and mx node programs: aiosmtpd servers on every listener, in one event loop.

Each listener is an aiosmtpd `SMTP` protocol served by `loop.create_server`,
so the local backend can run every server of a lab in its own loop (the
threaded `Controller` is not used; its backlog of 100 also stalls bursts of
connections). `LabSMTP` extends the engine only where the protocol needs it:

- replies the engine words itself are given the texts real servers use
  (`lab.replies`), and policy refusals among them are logged as events;
- a PROXY v1 header (the local backend's emulated client address) survives
  STARTTLS, and on an implicit-TLS listener it is read before the handshake,
  where a TLS-terminating proxy puts it;
- CRAM-MD5 (from `auth.AuthSMTP`);
- the protocol-level faults a scenario can switch on (`SessionFaults`): a slow
  greeting, a tarpit that never greets, a greeting refused by policy (the
  handler's `greeting_refusal`: rate limit, "no SMTP service"), a HELO-only
  server, STARTTLS advertised but broken, a TLS 1.0/1.1-only listener
  (`legacy_tls.py`), and a connection dropped in the middle of DATA.

Policy lives in `handler.py`; messages go to `store.MailStore` or, on a relay,
to the outbound queue (`queue.OutboundQueue`, written separately).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import socket
import ssl
import warnings
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, AnyStr, Protocol, cast

from aiosmtpd.proxy_protocol import ProxyData, get_proxy
from aiosmtpd.smtp import DATA_SIZE_DEFAULT, Session, TLSSetupException, syntax

from lab.net import Connector, DirectConnector
from lab.nodes.config import ListenerConfig, MailServerConfig
from lab.nodes.events import EventLog
from lab.nodes.mailserver import legacy_tls
from lab.nodes.mailserver.auth import KNOWN_MECHANISMS, AuthSMTP, UserTable
from lab.nodes.mailserver.checks import ClientChecks
from lab.nodes.mailserver.handler import (
    MailContext,
    MailHandler,
    RateLimiter,
    RecipientPolicy,
    RelayQueue,
)
from lab.nodes.mailserver.store import MailStore
from lab.nodes.resolver import make_resolver
from lab.replies import (
    S454_TLS_UNAVAILABLE,
    S502_EHLO_NOT_IMPLEMENTED,
    S502_NOT_RECOGNIZED,
    S503_AUTH_DISABLED,
    S504_MECHANISM,
    S530_AUTH_REQUIRED,
    S530_STARTTLS_FIRST,
    S538_ENCRYPTION_REQUIRED,
    S552_TOO_BIG,
)
from lab.scenario.model import AuthPolicy, ListenerTls, TlsVersions

MAILBOXES_DIR = "mailboxes"
BACKLOG = 1024
IDENT = "ESMTP smtp-lab"
PROXY_TIMEOUT = 10.0  # the local backend sends the header at once; this only bounds junk
HANDSHAKE_TIMEOUT = 10.0
PROXY_V1_MAX = 107  # the longest valid v1 header, CRLF included
# How much of a message a server with `drop_during_data` reads before it hangs up: the
# first segment or so, as when a path drops the larger packets that follow.
DROP_AFTER = 1024

# aiosmtpd logs every connection, and warns about deprecated attributes it uses itself.
# With no handler configured Python would print its warnings on stderr, in the middle
# of the CLI's or the TUI's output; a NullHandler keeps them for those who configure
# logging (they still propagate).
for _name in ("mail.log", "mail.debug"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

# Replies the engine sends with its own wording -> (verb or None, the lab's reply).
# None: the verb is the command whose check failed (see `check_auth_needed`).
_ENGINE_REPLIES: dict[str, tuple[str | None, str]] = {
    "530 Must issue a STARTTLS command first": (None, S530_STARTTLS_FIRST()),
    "530 5.7.0 Authentication required": (None, S530_AUTH_REQUIRED()),
    "538 5.7.11 Encryption required for requested authentication mechanism": (
        "auth",
        S538_ENCRYPTION_REQUIRED(),
    ),
    "504 5.5.4 Unrecognized authentication type": ("auth", S504_MECHANISM()),
    "552 Error: message size exceeds fixed maximum message size": ("mail", S552_TOO_BIG()),
    "552 Error: Too much mail data": ("data", S552_TOO_BIG()),
    "454 TLS not available": ("starttls", S454_TLS_UNAVAILABLE()),
}


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


@dataclass(frozen=True)
class SessionFaults:
    """Protocol-level faults of one listener's sessions (all off: a well-behaved server)."""

    banner_delay: float = 0.0  # real seconds before the greeting
    tarpit: bool = False  # never greet
    esmtp: bool = True  # False: EHLO is refused, HELO works
    starttls_broken: bool = False  # STARTTLS advertised, answered 454
    legacy_tls: bool = False  # TLS 1.0/1.1 only: see `legacy_tls`
    drop_during_data: bool = False  # hang up after the first part of the message

    @classmethod
    def of(cls, config: MailServerConfig, listener: ListenerConfig) -> SessionFaults:
        """The faults the server and listener configuration switch on."""
        return cls(
            banner_delay=config.banner_delay,
            tarpit=config.tarpit,
            esmtp=config.esmtp,
            starttls_broken=listener.starttls_broken,
            legacy_tls=listener.tls_versions is TlsVersions.LEGACY,
            drop_during_data=config.drop_during_data,
        )


class LabSMTP(AuthSMTP):
    """One SMTP connection: aiosmtpd's engine plus the lab's protocol-level additions.

    Args:
        handler: the listener's policy hooks.
        connections: the server's live connections; `stop` aborts them.
        early_proxy: a PROXY header already read by the listener (implicit TLS).
        faults: protocol-level faults to reproduce.
        **kwargs: aiosmtpd `SMTP` options.
    """

    def __init__(
        self,
        handler: MailHandler,
        *,
        connections: set[LabSMTP],
        auth_enabled: bool = True,
        early_proxy: ProxyData | None = None,
        faults: SessionFaults = SessionFaults(),
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.lab_handler = handler
        self._auth_enabled = auth_enabled
        self._connections = connections
        self._early_proxy = early_proxy
        self._checked_verb: str | None = None
        self._faults = faults
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection (called again after STARTTLS, with the TLS transport)."""
        self._connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        """Forget the connection."""
        self._connections.discard(self)
        super().connection_lost(error)

    def _create_session(self) -> Session:
        # STARTTLS starts a new session (RFC 3207), but the client is the same one:
        # keep the PROXY header's address, which every policy uses.
        session = super()._create_session()
        if self.session is not None:
            session.proxy_data = self.session.proxy_data
        return session

    async def _handle_client(self) -> None:
        assert self.session is not None
        if self._early_proxy is not None:
            self.session.proxy_data = self._early_proxy
            if not await self._call_handler_hook("PROXY", self._early_proxy):
                assert self.transport is not None
                self.transport.close()
                return
        elif self._proxy_timeout is None:
            # aiosmtpd has no connect hook; the handler logs the session here.
            await self._call_handler_hook("CONNECT")
        await super()._handle_client()

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH, refused outright on a listener without it (as Postfix does with SASL off).

        Not a handler hook: aiosmtpd answers an unknown mechanism with 504
        before it calls `handle_AUTH`.
        """
        if not self._auth_enabled:
            reply = S503_AUTH_DISABLED()
            self.lab_handler.engine_reply(self.session, "auth", reply)
            await self.push(reply)
            return
        await super().smtp_AUTH(arg)

    async def check_auth_needed(self, caller_method: str) -> bool:
        """The engine's "530 Authentication required" check; remembers the verb for events."""
        self._checked_verb = caller_method.lower()
        needed = bool(await super().check_auth_needed(caller_method))
        self._checked_verb = None
        return needed

    async def push(self, status: AnyStr) -> None:
        """Send a reply line; engine wordings are replaced by the lab's (`_ENGINE_REPLIES`).

        The first line of a session is the engine's 220 greeting: the greeting
        faults apply to it (`_greet`).
        """
        if not self._greeted:
            self._greeted = True
            if isinstance(status, str) and status.startswith("220 ") and not await self._greet():
                return
        if isinstance(status, str) and status in _ENGINE_REPLIES:
            verb, reply = _ENGINE_REPLIES[status]
            self.lab_handler.engine_reply(self.session, verb or self._checked_verb, reply)
            await super().push(reply)
            return
        await super().push(status)

    async def _greet(self) -> bool:
        """Before the greeting: tarpit, policy refusal, delay. False: the session is over.

        The engine pushes its greeting once the PROXY header (if any) has been
        read, so the client's address is known here.
        """
        assert self.session is not None
        faults = self._faults
        if self.lab_handler.spared(self.session):
            return True
        if faults.tarpit:
            self.lab_handler.fault_event(self.session, "tarpit")
            # Until the client gives up: its EOF or reset cancels this coroutine, and so
            # does the engine's idle timeout, which closes the connection.
            await asyncio.Event().wait()
        refusal = self.lab_handler.greeting_refusal(self.session)
        if refusal is not None:
            await super().push(refusal)
            assert self.transport is not None
            self.transport.close()
            return False
        if faults.banner_delay > 0:
            self.lab_handler.fault_event(self.session, "banner-delay", seconds=faults.banner_delay)
            await asyncio.sleep(faults.banner_delay)
        return True

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        """EHLO, or on a HELO-only server 502 (the client is expected to fall back to HELO)."""
        if self._faults.esmtp:
            await super().smtp_EHLO(hostname)
            return
        reply = S502_EHLO_NOT_IMPLEMENTED()
        self.lab_handler.engine_reply(self.session, "ehlo", reply)
        await self.push(reply)

    @syntax("STARTTLS")
    async def smtp_STARTTLS(self, arg: str) -> None:
        """STARTTLS, with the listener's faults: unknown (HELO-only), broken, legacy versions."""
        faults = self._faults
        if not faults.esmtp:
            reply = S502_NOT_RECOGNIZED()
        elif not arg and self.tls_context is not None and faults.starttls_broken:
            reply = S454_TLS_UNAVAILABLE()
        elif not arg and self.tls_context is not None and faults.legacy_tls:
            await self._legacy_starttls()
            return
        else:
            await super().smtp_STARTTLS(arg)
            return
        self.lab_handler.engine_reply(self.session, "starttls", reply)
        await self.push(reply)

    async def _legacy_starttls(self) -> None:
        """STARTTLS on a TLS 1.0/1.1 listener: refuse a modern ClientHello with the alert
        OpenSSL produces (see `legacy_tls`), else upgrade as the engine does."""
        assert self.tls_context is not None
        assert self.transport is not None
        await self.push("220 Ready to start TLS")
        try:
            hello = await asyncio.wait_for(legacy_tls.read_record(self._reader), HANDSHAKE_TIMEOUT)
        except (asyncio.IncompleteReadError, TimeoutError, OSError):
            self.transport.close()
            return
        refusal = legacy_tls.handshake_refusal(self.tls_context, hello)
        if refusal is not None:
            alert, reason = refusal
            self.lab_handler.tls_refused(reason)
            cast("asyncio.Transport", self.transport).write(alert)
            self.transport.close()
            return
        # aiosmtpd's `smtp_STARTTLS` from here on, with the bytes already read handed over.
        waiter = self.loop.create_future()
        self._tls_protocol = sslproto.SSLProtocol(
            self.loop, self, self.tls_context, waiter, server_side=True
        )
        self._original_transport = self.transport
        self._original_transport.set_protocol(self._tls_protocol)
        self.transport = self._tls_protocol._app_transport
        self._tls_protocol.connection_made(self._original_transport)
        legacy_tls.feed(self._tls_protocol, hello)
        try:
            await waiter
        except asyncio.CancelledError:
            raise
        except Exception as error:
            raise TLSSetupException() from error

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """DATA; with `drop_during_data` the first part is read, then the line goes dead."""
        if not self._faults.drop_during_data:
            await super().smtp_DATA(arg)
            return
        # The engine's own checks first: the fault is in the middle of a valid DATA.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        assert self.session is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        received = await self._reader.read(DROP_AFTER)
        self.lab_handler.fault_event(self.session, "dropped-during-data", received=len(received))
        assert self.transport is not None
        self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (server stop): no TLS goodbye, no waiting for the peer."""
        transport = self._original_transport or self.transport
        if transport is not None:
            cast("asyncio.Transport", transport).abort()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The coroutine serving this connection."""
        return self._handler_coroutine


class _Listener:
    """One listening port and the options of every SMTP session on it."""

    def __init__(
        self,
        context: MailContext,
        listener: ListenerConfig,
        tls: ssl.SSLContext | None,
        authenticator: UserTable,
        connections: set[LabSMTP],
    ) -> None:
        config = context.config
        self.listener = listener
        self.handler = MailHandler(context, listener)
        self.connections = connections
        self.faults = SessionFaults.of(config, listener)
        self.implicit = listener.tls is ListenerTls.IMPLICIT
        if self.implicit and tls is None:
            raise ValueError(
                f"{config.name}: listener {listener.port} uses implicit TLS "
                "but the server has no certificate"
            )
        self.tls = tls
        auth_off = listener.auth is AuthPolicy.OFF
        offered = set() if auth_off else {str(m) for m in config.auth_mechanisms}
        # The engine tells "encrypted" by STARTTLS only: on an implicit-TLS listener every
        # session is encrypted from the start, so its TLS demands are already met.
        auth_require_tls = listener.auth_requires_tls and not self.implicit and not auth_off
        auth_required = listener.auth is AuthPolicy.REQUIRED
        # aiosmtpd warns when AUTH is required without TLS; on an implicit listener that is
        # wrong, elsewhere it is the scenario's deliberate choice.
        self._quiet = auth_required and not auth_require_tls
        self.options: dict[str, Any] = {
            "hostname": config.hostname,
            "ident": IDENT,
            # Without a configured SIZE the engine still caps DATA so that junk cannot
            # exhaust memory; the handler then leaves SIZE out of EHLO.
            "data_size_limit": config.max_size or DATA_SIZE_DEFAULT,
            # A HELO-only server has no STARTTLS to offer.
            "tls_context": (
                tls if listener.tls is ListenerTls.STARTTLS and self.faults.esmtp else None
            ),
            "require_starttls": listener.require_tls and listener.tls is ListenerTls.STARTTLS,
            "auth_required": auth_required,
            "auth_require_tls": auth_require_tls,
            "auth_exclude_mechanism": sorted(KNOWN_MECHANISMS - offered),
            "authenticator": authenticator,
            "auth_enabled": not auth_off,
            "proxy_protocol_timeout": (
                PROXY_TIMEOUT if config.proxy_protocol and not self.implicit else None
            ),
        }
        self.proxy_before_tls = config.proxy_protocol and self.implicit
        # Implicit TLS limited to old versions needs its own acceptor too (`legacy_tls`).
        self.own_acceptor = self.implicit and (self.proxy_before_tls or self.faults.legacy_tls)
        self._server: asyncio.Server | None = None
        self._gate: _ProxyThenTls | None = None

    def protocol(self, early_proxy: ProxyData | None = None) -> LabSMTP:
        """A protocol instance for one new connection."""
        loop = asyncio.get_running_loop()
        if not self._quiet:
            return LabSMTP(
                self.handler,
                connections=self.connections,
                early_proxy=early_proxy,
                faults=self.faults,
                loop=loop,
                **self.options,
            )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return LabSMTP(
                self.handler,
                connections=self.connections,
                early_proxy=early_proxy,
                faults=self.faults,
                loop=loop,
                **self.options,
            )

    async def open(self, host: str) -> int:
        """Listen; returns the bound port."""
        loop = asyncio.get_running_loop()
        if self.own_acceptor:
            assert self.tls is not None
            self._gate = _ProxyThenTls(
                host,
                self.listener.bind_port,
                self.protocol,
                self.tls,
                proxy=self.proxy_before_tls,
                refused=self.handler.tls_refused if self.faults.legacy_tls else None,
            )
            return self._gate.port
        self._server = await loop.create_server(
            self.protocol,
            host,
            self.listener.bind_port,
            backlog=BACKLOG,
            ssl=self.tls if self.implicit else None,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.implicit else None,
        )
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting (open connections are the server's business)."""
        if self._server is not None:
            self._server.close()
        if self._gate is not None:
            await self._gate.close()

    async def wait_closed(self) -> None:
        """Wait until the listening socket is released."""
        if self._server is not None:
            await self._server.wait_closed()


class _ProxyThenTls:
    """An implicit-TLS listener behind a PROXY header: the header in clear, then TLS.

    `loop.create_server(ssl=...)` would start the handshake on the header's
    bytes, and aiosmtpd reads the header from inside the TLS session; so this
    listener accepts itself, reads exactly the header, and only then hands
    the socket to asyncio's TLS transport. Only PROXY v1 (text) is read here.

    With `refused` set (a TLS 1.0/1.1 listener, `legacy_tls`), the ClientHello
    is first looked at, unread, and a modern one answered with OpenSSL's alert;
    `refused(reason)` is told.
    """

    def __init__(
        self,
        host: str,
        port: int,
        protocol: Any,
        tls: ssl.SSLContext,
        *,
        proxy: bool = True,
        refused: Callable[[str], None] | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
        self._sock.setblocking(False)
        self.port: int = self._sock.getsockname()[1]
        self._protocol = protocol
        self._tls = tls
        self._proxy = proxy
        self._refused = refused
        self._pending: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError:
                # Out of descriptors and the like: wait instead of spinning (as asyncio does).
                await asyncio.sleep(0.1)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._connection(conn))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _connection(self, conn: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        proxy: ProxyData | None = None
        try:
            if self._proxy:
                header = await asyncio.wait_for(_read_proxy_line(loop, conn), PROXY_TIMEOUT)
                proxy = await _parse_proxy(header)
                if not proxy:
                    conn.close()
                    return
            if self._refused is not None:
                hello = await asyncio.wait_for(legacy_tls.peek_record(conn), HANDSHAKE_TIMEOUT)
                refusal = legacy_tls.handshake_refusal(self._tls, hello)
                if refusal is not None:
                    alert, reason = refusal
                    self._refused(reason)
                    await legacy_tls.refuse_raw(conn, hello, alert)
                    return
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, TimeoutError):
            # Nobody awaits this task: errors end here, with the connection.
            conn.close()
            return
        # From here on the transport owns the socket and closes it on failure.
        with contextlib.suppress(OSError, TimeoutError):
            await loop.connect_accepted_socket(
                lambda: self._protocol(proxy),
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )

    async def close(self) -> None:
        self._accepting.cancel()
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(self._accepting, *self._pending, return_exceptions=True)
        self._sock.close()


async def _read_proxy_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """Read up to the header's CRLF and not one byte further: the rest is TLS."""
    line = bytearray()
    while not line.endswith(b"\r\n") and len(line) <= PROXY_V1_MAX:
        chunk = await loop.sock_recv(conn, 1)
        if not chunk:
            break
        line += chunk
    return bytes(line)


async def _parse_proxy(header: bytes) -> ProxyData:
    """aiosmtpd's PROXY parser over bytes already read; an invalid header is falsy."""
    if not header.startswith(b"PROXY ") or not header.endswith(b"\r\n"):
        return ProxyData(version=None).with_error("PROXY header missing or malformed")
    reader = asyncio.StreamReader()
    reader.feed_data(header)
    reader.feed_eof()
    return await get_proxy(reader)


class RunningMailServer:
    """A started relay or mx (satisfies `lab.nodes.base.RunningNode`)."""

    def __init__(self, context: MailContext) -> None:
        self.context = context
        self.config = context.config
        self.store = context.store
        self.events = context.events
        self._listeners: list[_Listener] = []
        self._connections: set[LabSMTP] = set()
        self._ports: dict[int, int] = {}
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
            listener = _Listener(
                self.context, listener_config, tls, authenticator, self._connections
            )
            self._listeners.append(listener)
            self._ports[listener_config.port] = await listener.open(config.listen_host)
        self.events.emit("started", role=config.role, hostname=config.hostname, ports=self._ports)

    async def stop(self) -> None:
        """Stop listening, drop open sessions, stop the queue, flush the store; idempotent."""
        if self._stopped:
            return
        self._stopped = True
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
) -> RunningMailServer:
    """Start every listener of a relay or mx; returns once all of them listen.

    Args:
        config: the node's generated configuration.
        connector: how the relay's queue opens outbound connections.
        queue_factory: builds the outbound queue (default: `queue.OutboundQueue`
            for a relay with a `queue` section); tests pass a recording fake.

    Raises:
        ValueError: an implicit-TLS listener without a certificate.
        OSError: a port could not be bound.
    """
    loop = asyncio.get_running_loop()
    events = EventLog(config.data_dir, config.name)
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
    context = MailContext(config, store, events, policy, queue, checks=checks, limiter=limiter)
    server = RunningMailServer(context)
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
