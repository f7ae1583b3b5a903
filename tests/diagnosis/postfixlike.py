"""aiosmtpd servers that refuse the way Postfix 3.7 does, word for word.

The diagnosis engine must hold against real mail servers, whose words differ
from the lab's own. `PostfixPolicy` says which restriction a server applies;
`PostfixServers` runs aiosmtpd on real sockets with handlers that answer with
Postfix's reply texts (smtpd.c, smtpd_check.c, smtpd_sasl_proto.c, anvil's
connection limit, postgrey's greylisting), so the tests run everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
HOSTNAME = "mail.example.org"
CLIENT = f"unknown[{HOST}]"

# Postfix 3.7's words.
RELAY_DENIED = "554 5.7.1 <{rcpt}>: Relay access denied"
RELAY_DEFERRED = "454 4.7.1 <{rcpt}>: Relay access denied"  # defer_unauth_destination
STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
AUTH_FAILED = "535 5.7.8 Error: authentication failed: authentication failure"
UNKNOWN_USER = (
    "550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown in virtual mailbox table"
)
TOO_BIG = "552 5.3.4 Message size exceeds fixed limit"
TOO_MANY_CONNECTIONS = f"421 4.7.0 {HOSTNAME} Error: too many connections from {HOST}"
SENDER_DOMAIN = "450 4.1.8 <{sender}>: Sender address rejected: Domain not found"
CLIENT_REJECTED = f"554 5.7.1 <{CLIENT}>: Client host rejected: Access denied"
GREYLISTED = (
    "450 4.2.0 <{rcpt}>: Recipient address rejected: Greylisted, see "
    "http://postgrey.schweikert.ch/help/example.org.html"
)
MECHANISM_UNSUPPORTED = "504 5.5.4 Unsupported authentication mechanism"
AUTH_REQUIRED = "530 5.7.0 Authentication required"


@dataclass
class PostfixPolicy:
    """One server's restrictions; the defaults are a healthy submission service."""

    local_domains: tuple[str, ...] = ("example.org",)
    mailboxes: tuple[str, ...] = ("alice@example.org", "bob@example.org")
    users: dict[str, str] = field(default_factory=lambda: {"alice@example.org": "s3cret-Pa55"})
    tls: ssl.SSLContext | None = None  # STARTTLS offered when set
    implicit_tls: bool = False  # `tls` from the first byte instead (smtpd_tls_wrappermode)
    auth_mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")
    tls_before_mail: bool = False  # smtpd_tls_security_level=encrypt
    relay_reply: str = RELAY_DENIED  # an unauthenticated RCPT to another domain
    mail_reply: str | None = None  # refuse every unauthenticated MAIL with this
    rcpt_reply: str | None = None  # refuse every unauthenticated RCPT with this
    sender_reply: str | None = None  # refuse every sender with this (sender checks)
    size_limit: int | None = None  # message_size_limit
    announce_size: bool = True  # SIZE in EHLO (else only the end of DATA tells)
    connection_limit: int | None = None  # smtpd_client_connection_count_limit
    connection_reply: str = TOO_MANY_CONNECTIONS  # the greeting over the limit


class _Handler:
    def __init__(self, policy: PostfixPolicy) -> None:
        self.policy = policy

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.policy.size_limit is not None and self.policy.announce_size:
            responses.insert(1, f"250-SIZE {self.policy.size_limit}")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        policy = self.policy
        if policy.tls_before_mail and session.ssl is None:
            return STARTTLS_FIRST
        if policy.mail_reply and not session.authenticated:
            return policy.mail_reply
        if policy.sender_reply:
            return policy.sender_reply.format(sender=address)
        size = next((o[5:] for o in options if o.upper().startswith("SIZE=")), None)
        if policy.size_limit is not None and size and int(size) > policy.size_limit:
            return TOO_BIG
        envelope.mail_from = address
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        policy = self.policy
        if policy.rcpt_reply and not session.authenticated:
            return policy.rcpt_reply.format(rcpt=address)
        domain = address.rpartition("@")[2].lower()
        if domain not in policy.local_domains:
            if not session.authenticated:
                return policy.relay_reply.format(rcpt=address)
        elif address.lower() not in policy.mailboxes:
            return UNKNOWN_USER.format(rcpt=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        limit = self.policy.size_limit
        if limit is not None and len(envelope.original_content or b"") > limit:
            return TOO_BIG
        return "250 2.0.0 Ok: queued as 4ZbXyT1mQ9z3"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            user, password = data.login.decode(), data.password.decode()
            if self.policy.users.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message=AUTH_FAILED)


class _PostfixSmtp(SMTP):
    """aiosmtpd with Postfix's greeting, and anvil's connection count limit."""

    def __init__(self, handler: _Handler, counter: list[int], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._counter = counter
        self._limit = handler.policy.connection_limit
        self._refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._counter[0] += 1
        self._refused = self._limit is not None and self._counter[0] > self._limit
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._counter[0] -= 1
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refused:
            await self.push(self.event_handler.policy.connection_reply)
            assert self.transport is not None
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_AUTH(self, arg: str) -> None:
        mechanism = arg.split()[0].upper() if arg else ""
        if mechanism and mechanism not in self._handler_policy_mechanisms():
            await self.push(MECHANISM_UNSUPPORTED)
            return
        await super().smtp_AUTH(arg)

    def _handler_policy_mechanisms(self) -> tuple[str, ...]:
        return tuple(self.event_handler.policy.auth_mechanisms)


class PostfixServers:
    """Starts Postfix-worded servers in the running loop; `close()` stops them all."""

    def __init__(self) -> None:
        self._servers: list[asyncio.base_events.Server] = []
        self._held: list[asyncio.StreamWriter] = []

    async def start(self, policy: PostfixPolicy) -> int:
        """Listen on an ephemeral port of 127.0.0.1; returns the port."""
        handler = _Handler(policy)
        counter = [0]
        excluded = [m for m in ("PLAIN", "LOGIN") if m not in policy.auth_mechanisms]

        def factory() -> _PostfixSmtp:
            return _PostfixSmtp(
                handler,
                counter,
                hostname=HOSTNAME,
                ident="ESMTP Postfix (Debian/GNU)",
                tls_context=None if policy.implicit_tls else policy.tls,
                require_starttls=False,
                auth_require_tls=policy.tls is not None and not policy.implicit_tls,
                authenticator=handler.authenticate,
                auth_exclude_mechanism=excluded,
                data_size_limit=None,
            )

        wrapper = policy.tls if policy.implicit_tls else None
        server = await asyncio.get_running_loop().create_server(factory, HOST, 0, ssl=wrapper)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def hold(self, port: int) -> None:
        """Keep one connection open to `port` (the company a connection limit needs)."""
        reader, writer = await asyncio.open_connection(HOST, port)
        await reader.readline()
        self._held.append(writer)

    async def close(self) -> None:
        """Drop held connections and stop every server."""
        for writer in self._held:
            writer.close()
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)
