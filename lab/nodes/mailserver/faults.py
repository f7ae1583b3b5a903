"""Protocol-level faults of a mail server's sessions, played by the SMTP engine itself.

A scenario can make a listener misbehave in ways no handler hook can reach,
because they happen around the commands rather than in their replies: a
slow greeting, a tarpit that never greets, a greeting refused by policy
(the handler's `greeting_refusal`: rate limit, "no SMTP service"), a
HELO-only server, STARTTLS advertised but broken, a TLS 1.0/1.1-only
listener (`legacy_tls.py`) and a connection dropped in the middle of DATA.
`SessionFaults` says which are on; `FaultySMTP` is the engine layer that
plays them (`protocol.LabSMTP` builds on it).
"""

from __future__ import annotations

import asyncio
from asyncio import sslproto
from dataclasses import dataclass
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import TLSSetupException, syntax

from lab.nodes.config import ListenerConfig, MailServerConfig
from lab.nodes.mailserver import legacy_tls
from lab.nodes.mailserver.acceptor import HANDSHAKE_TIMEOUT
from lab.nodes.mailserver.auth import AuthSMTP
from lab.nodes.mailserver.handler import MailHandler
from lab.replies import S454_TLS_UNAVAILABLE, S502_EHLO_NOT_IMPLEMENTED, S502_NOT_RECOGNIZED
from lab.scenario.model import TlsVersions

# How much of a message a server with `drop_during_data` reads before it hangs up: the
# first segment or so, as when a path drops the larger packets that follow.
DROP_AFTER = 1024


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


NO_FAULTS = SessionFaults()


class FaultySMTP(AuthSMTP):
    """aiosmtpd's engine (with CRAM-MD5) playing a listener's `SessionFaults`.

    Args:
        handler: the listener's policy hooks; faults are reported to it.
        faults: the faults to reproduce.
        **kwargs: aiosmtpd `SMTP` options.
    """

    def __init__(
        self, handler: MailHandler, *, faults: SessionFaults = NO_FAULTS, **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self.lab_handler = handler
        self._faults = faults
        self._greeted = False

    async def push(self, status: AnyStr) -> None:
        """Send a reply line; the first one of a session is the engine's 220 greeting,
        to which the greeting faults apply (`_greet`)."""
        if not self._greeted:
            self._greeted = True
            if isinstance(status, str) and status.startswith("220 ") and not await self._greet():
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
