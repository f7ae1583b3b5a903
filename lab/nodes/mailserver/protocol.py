"""One inbound SMTP connection: aiosmtpd's engine with the lab's protocol-level additions.

`LabSMTP` extends the engine only where the protocol needs it (policy stays
in the handler, `handler.py`):

- replies the engine words itself are given the texts real servers use
  (`lab.replies`), and policy refusals among them are logged as events;
- every reply is worded as the server's flavour words it (`lab.flavours`);
- a PROXY v1 header (the local backend's emulated client address) survives
  STARTTLS, and on an implicit-TLS listener it is read before the handshake
  (`acceptor.ProxyThenTls`) and handed over here;
- AUTH refused outright on a listener without it;
- VRFY and ETRN decided by the handler (`commands.py`), and a command the
  server does not know (EXPN, TURN) answered in Postfix's words;
- CRAM-MD5 (`auth.AuthSMTP`) and the scenario's session faults
  (`faults.FaultySMTP`), from the classes it builds on;
- the connection registers itself with its server, which aborts it on stop;
- the server's session caps (`limits.SessionGate`) refuse it with 421 4.7.0
  before the greeting, and a session idle too long is told 421 4.4.2 before
  the engine closes it (which it would do silently).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, AnyStr, cast

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import Session, syntax

from lab.flavours import reword
from lab.nodes.mailserver import engine_tables
from lab.nodes.mailserver.auth import client_address
from lab.nodes.mailserver.faults import NO_FAULTS, FaultySMTP, SessionFaults
from lab.nodes.mailserver.handler import MailHandler
from lab.replies import (
    S454_TLS_UNAVAILABLE,
    S500_ETRN_SYNTAX,
    S500_NOT_RECOGNIZED,
    S501_ETRN_DOMAIN,
    S503_AUTH_DISABLED,
    S503_MAIL_IN_PROGRESS,
    S504_MECHANISM,
    S530_AUTH_REQUIRED,
    S530_STARTTLS_FIRST,
    S538_ENCRYPTION_REQUIRED,
    S552_TOO_BIG,
)

# aiosmtpd logs every connection, and warns about deprecated attributes it uses itself.
# With no handler configured Python would print its warnings on stderr, in the middle
# of the CLI's or the TUI's output; a NullHandler keeps them for those who configure
# logging (they still propagate).
for _name in ("mail.log", "mail.debug"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

engine_tables.install()

# A plain "<local@domain>" of dot-atoms, as nearly every client sends, is read with this;
# the engine's RFC 5322 parser (email._header_value_parser: a third of a millisecond per
# address) keeps every other form (quoted local parts, literals, comments, no brackets).
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
# After the ">": nothing, or blanks and parameters without comments or line breaks (the
# engine's parser drops the blanks, and would read a comment).
_SIMPLE_PATH = re.compile(
    rf"[ \t]*<({_ATOM}(?:\.{_ATOM})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    r"(?:[ \t]+([^ \t()\r\n\"][^()\r\n\"]*)?)?\Z"
)

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

# The engine's answers to a command it has no method for (TURN, ATRN, ...) and to EXPN,
# which it knows only to refuse: Postfix implements neither.
_UNKNOWN_COMMAND = re.compile(
    r'500 Error: command "[^"]*" not recognized\Z|502 EXPN not implemented\Z'
)
# ETRN's argument (RFC 1985): a domain, "@domain" (subdomains too) or "#queue".
_ETRN_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.?\Z")


class LabSMTP(FaultySMTP):
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
        faults: SessionFaults = NO_FAULTS,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, faults=faults, **kwargs)
        self._auth_enabled = auth_enabled
        self._connections = connections
        self._early_proxy = early_proxy
        self._checked_verb: str | None = None
        self._counted = False  # by the gate's overall cap
        self._counted_client: str | None = None  # by its per-client cap
        self._session_open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Track the connection (called again after STARTTLS, with the TLS transport);
        refuse it at once when the server is full."""
        first = self.transport is None
        self._connections.add(self)
        super().connection_made(transport)
        gate = self.lab_handler.context.gate
        if not first or gate is None:
            return
        self._counted = gate.open_session()
        if not self._counted:
            # Synchronously, before the session's coroutine first runs: the socket is
            # closed on the loop's next turn, whatever else the flood brings.
            assert self.session is not None
            assert self.task is not None
            self.task.cancel()
            reply = self.lab_handler.limit_reply(self.session, "connections")
            writable = cast("asyncio.WriteTransport", transport)
            writable.write(f"{reply}\r\n".encode("ascii"))
            writable.close()

    def connection_lost(self, error: Exception | None) -> None:
        """Forget the connection."""
        self._connections.discard(self)
        gate = self.lab_handler.context.gate
        if gate is not None:
            if self._counted:
                gate.close_session()
            if self._counted_client is not None:
                gate.release_client(self._counted_client)
        self._counted, self._counted_client = False, None
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

    async def _greet(self) -> bool:
        """Before the greeting: the per-client cap (the server's own addresses and loopback
        are exempt), then the scenario's faults."""
        assert self.session is not None
        gate = self.lab_handler.context.gate
        if gate is not None and not self.lab_handler.spared(self.session):
            client = client_address(self.session)
            if not gate.admit_client(client):
                await self.push(self.lab_handler.limit_reply(self.session, "per-client"))
                assert self.transport is not None
                self.transport.close()
                return False
            self._counted_client = client
        self._session_open = await super()._greet()
        return self._session_open

    def _timeout_cb(self) -> None:
        # RFC 5321 §4.5.3.2: a server that gives up on an idle client says so with 421.
        # Before the greeting (a tarpit, a PROXY header never sent) it just closes.
        transport = self.transport
        if self._session_open and transport is not None and not transport.is_closing():
            assert self.session is not None
            reply = self.lab_handler.limit_reply(self.session, "timeout")
            cast("asyncio.WriteTransport", transport).write(f"{reply}\r\n".encode("ascii"))
        super()._timeout_cb()  # type: ignore[no-untyped-call]

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The address of MAIL/RCPT and what follows it (the engine's, faster: `_SIMPLE_PATH`)."""
        match = _SIMPLE_PATH.match(arg)
        if match is None:
            return super()._getaddr(arg)
        address, rest = match.group(1), match.group(2) or ""
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, rest

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

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:
        """VRFY, answered by the handler from the server's `vrfy` setting; the argument goes
        over as given (Postfix echoes it), an empty one included (502 comes before 501)."""
        if await self.check_auth_needed("VRFY"):
            return
        await self.push(await self._call_handler_hook("VRFY", arg or ""))

    @syntax("ETRN <domain>")
    async def smtp_ETRN(self, arg: str) -> None:
        """ETRN (RFC 1985): the syntax here, whether a queue run starts in the handler."""
        assert self.session is not None
        words = (arg or "").split()
        if self.envelope is not None and self.envelope.mail_from is not None:
            reply = S503_MAIL_IN_PROGRESS()
        elif len(words) != 1:
            reply = S500_ETRN_SYNTAX()
        else:
            domain = words[0] if words[0][:1].isalnum() else words[0][1:]
            if not _ETRN_DOMAIN.match(domain):
                reply = S501_ETRN_DOMAIN()
            else:
                reply = await self._call_handler_hook("ETRN", domain)
        await self.push(reply)

    async def check_auth_needed(self, caller_method: str) -> bool:
        """The engine's "530 Authentication required" check; remembers the verb for events."""
        self._checked_verb = caller_method.lower()
        needed = bool(await super().check_auth_needed(caller_method))
        self._checked_verb = None
        return needed

    async def push(self, status: AnyStr) -> None:
        """Send a reply line; engine wordings are replaced by the lab's (`_ENGINE_REPLIES`),
        then worded as the server's flavour words them (`lab.flavours`)."""
        if isinstance(status, str) and status in _ENGINE_REPLIES:
            verb, reply = _ENGINE_REPLIES[status]
            self.lab_handler.engine_reply(self.session, verb or self._checked_verb, reply)
            status = reply
        elif isinstance(status, str) and _UNKNOWN_COMMAND.match(status):
            status = S500_NOT_RECOGNIZED()
        if isinstance(status, str):
            status = reword(status, self.lab_handler.config.flavour)
        await super().push(status)

    def abort(self) -> None:
        """Drop the connection now (server stop): no TLS goodbye, no waiting for the peer."""
        transport = self._original_transport or self.transport
        if transport is not None:
            cast("asyncio.Transport", transport).abort()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The coroutine serving this connection."""
        return self._handler_coroutine
