"""One listening port of a mail server: its aiosmtpd session options and its socket.

A `Listener` turns a `ListenerConfig` (port, TLS mode, AUTH policy, faults)
into the options of every `protocol.LabSMTP` session on that port, and opens
the socket: `loop.create_server` (with TLS for implicit-TLS ports), or
`acceptor.ProxyThenTls` when something must be read before the TLS
handshake. The threaded aiosmtpd `Controller` is not used, so that the local
backend can run every server of a lab in one event loop.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import DATA_SIZE_DEFAULT

from lab.nodes.config import ListenerConfig
from lab.nodes.mailserver.acceptor import (
    ACCEPT_BURST,
    BACKLOG,
    HANDSHAKE_TIMEOUT,
    PROXY_TIMEOUT,
    ProxyThenTls,
    listening_socket,
)
from lab.nodes.mailserver.auth import KNOWN_MECHANISMS, UserTable
from lab.nodes.mailserver.context import MailContext
from lab.nodes.mailserver.faults import SessionFaults
from lab.nodes.mailserver.handler import MailHandler
from lab.nodes.mailserver.protocol import LabSMTP
from lab.scenario.model import AuthPolicy, ListenerTls

IDENT = "ESMTP smtp-lab"


class Listener:
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
            "timeout": config.limits.idle_timeout,
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
        self._gate: ProxyThenTls | None = None

    def protocol(self, early_proxy: ProxyData | None = None) -> LabSMTP:
        """A protocol instance for one new connection."""
        if not self._quiet:  # catch_warnings costs as much as the rest: only where needed
            return self._new_session(early_proxy)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS")
            return self._new_session(early_proxy)

    def _new_session(self, early_proxy: ProxyData | None) -> LabSMTP:
        return LabSMTP(
            self.handler,
            connections=self.connections,
            early_proxy=early_proxy,
            faults=self.faults,
            loop=asyncio.get_running_loop(),
            **self.options,
        )

    async def open(self, host: str, *, reuse_port: bool = False) -> int:
        """Listen (sharing the port with other workers when `reuse_port`); the bound port."""
        loop = asyncio.get_running_loop()
        if self.own_acceptor:
            assert self.tls is not None
            self._gate = ProxyThenTls(
                host,
                self.listener.bind_port,
                self.protocol,
                self.tls,
                proxy=self.proxy_before_tls,
                refused=self.handler.tls_refused if self.faults.legacy_tls else None,
                reuse_port=reuse_port,
            )
            return self._gate.port
        sock = listening_socket(host, self.listener.bind_port, reuse_port=reuse_port)
        try:
            self._server = await loop.create_server(
                self.protocol,
                sock=sock,
                backlog=ACCEPT_BURST,
                ssl=self.tls if self.implicit else None,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT if self.implicit else None,
            )
        except BaseException:
            sock.close()
            raise
        # asyncio re-listened with ACCEPT_BURST: give the kernel's queue its full length back.
        sock.listen(BACKLOG)
        return int(sock.getsockname()[1])

    def listening_fds(self) -> set[int]:
        """The descriptors of the listening sockets (asyncio names them in its reports)."""
        if self._server is not None:
            return {sock.fileno() for sock in self._server.sockets}
        return set()

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
