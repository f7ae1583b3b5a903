"""Mail server policy: aiosmtpd handler hooks that decide each command and return the reply.

The engine (aiosmtpd's `SMTP`, extended in `protocol.py`) owns the protocol;
everything a scenario can configure is decided by `MailHandler`, one per
listener: the greeting refusals (no service, the connection rate limit of
`rate_limit.py`), the EHLO keywords offered, send-as at MAIL, the recipient
limit, the DNS checks of the client and the sender (`checks.py`) and the
recipient itself (`recipients.py`) at RCPT, and at DATA the From: domain's
DMARC policy (`dmarc.py`) and the accepted message (`ingest.py`). Every
decision is logged as an event.
"""

from __future__ import annotations

import functools
import ipaddress
import weakref
from typing import Any

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from lab.nodes.config import ListenerConfig
from lab.nodes.mailserver.auth import client_address
from lab.nodes.mailserver.checks import Refusal
from lab.nodes.mailserver.commands import etrn_reply, vrfy_reply
from lab.nodes.mailserver.context import MailContext
from lab.nodes.mailserver.dmarc import dmarc_refusal
from lab.nodes.mailserver.ingest import accept_message
from lab.nodes.mailserver.recipients import Decision
from lab.replies import (
    S250_SENDER_OK,
    S421_TIMEOUT,
    S421_TOO_MANY,
    S421_TOO_MANY_FROM_CLIENT,
    S451_LOCAL_ERROR,
    S452_TOO_MANY_RECIPIENTS,
    S550_SEND_AS_DENIED,
    S554_NO_SERVICE,
)
from lab.scenario.model import AuthPolicy, SendAsPolicy, VrfyPolicy

NULL_SENDER = ""


class MailHandler:
    """aiosmtpd hooks for one listener; the reply each hook returns is what the client gets."""

    def __init__(self, context: MailContext, listener: ListenerConfig) -> None:
        self.context = context
        self.listener = listener
        self.config = context.config
        self.events = context.events
        # The DNS checks' verdict per transaction: an envelope lives from MAIL to the end
        # of DATA (or RSET), and its client and sender do not change in between.
        self._verdicts: weakref.WeakKeyDictionary[Envelope, Refusal | None] = (
            weakref.WeakKeyDictionary()
        )

    # --- connection ---------------------------------------------------------------------------

    async def handle_CONNECT(self, server: SMTP, session: Session, envelope: Envelope) -> None:
        """Called by `LabSMTP` before the banner when no PROXY header is expected."""
        self._session_event(server, session)

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy_data: ProxyData
    ) -> bool:
        """Accept the PROXY header: its source is the client address every policy uses."""
        self._session_event(server, session)
        return True

    def _session_event(self, server: SMTP, session: Session) -> None:
        peer = session.peer
        self.events.emit(
            "session",
            peer=_format_peer(peer),
            proxied_peer=client_address(session) if session.proxy_data else None,
            client=client_address(session),
            port=self.listener.port,
            tls=_encrypted(server),
        )

    def spared(self, session: Session) -> bool:
        """Whether the greeting faults spare this client: the server itself (its health
        checks, in a container or in the local backend) and loopback."""
        client = client_address(session)
        return client in self.config.fault_exempt or _loopback(client)

    def greeting_refusal(self, session: Session) -> str | None:
        """The reply that refuses a new session instead of the 220 greeting, or None.

        Called by `LabSMTP` right before the greeting, when the client's address
        (the PROXY header's, in the local backend) is known. The engine sends
        the reply and closes the connection.
        """
        config = self.config
        client = client_address(session)
        limiter = self.context.limiter
        if self.spared(session):
            return None
        if config.no_service:
            decision, reply = "no-service", S554_NO_SERVICE(hostname=config.hostname)
        elif (
            limiter is not None
            and limiter.applies_to(self.listener.port)
            and not limiter.admit(client)
        ):
            decision, reply = "rate-limited", S421_TOO_MANY(hostname=config.hostname)
        else:
            return None
        self._command_event("connect", reply, session, decision=decision)
        return reply

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """Trim the engine's EHLO keywords to what this listener really offers."""
        # With this hook defined, aiosmtpd leaves recording the EHLO name to us.
        session.host_name = hostname
        kept = []
        for line in responses:
            keyword = line[4:].split(" ", 1)[0].upper()
            if keyword == "AUTH" and self.listener.auth is AuthPolicy.OFF:
                continue
            # Without a configured limit the engine still caps DATA (memory), silently.
            if keyword == "SIZE" and self.config.max_size is None:
                continue
            kept.append(line)
        # Postfix names the commands it answers beyond the transaction after SIZE (or the
        # greeting line): VRFY unless `disable_vrfy_command`, ETRN always (RFC 1985).
        vrfy = [] if self.config.vrfy == VrfyPolicy.DISABLED else ["250-VRFY"]
        offered = [*vrfy, "250-ETRN"]
        at = next((i + 1 for i, line in enumerate(kept) if line[4:].upper().startswith("SIZE")), 1)
        return [*kept[:at], *offered, *kept[at:]]

    # --- envelope -----------------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        """Take the sender (SIZE was already checked by the engine against the limit).

        With `send_as: enforce`, an authenticated user may only send as himself.
        """
        sender = _sender(address)
        if not self._may_send_as(session, sender):
            reply = S550_SEND_AS_DENIED()
            user = session.auth_data
            self._command_event(
                "mail", reply, session, sender=sender, decision="send-as-denied", user=user
            )
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        reply = S250_SENDER_OK(address=sender)
        self._command_event("mail", reply, session, sender=sender)
        return reply

    def _may_send_as(self, session: Session, sender: str) -> bool:
        """The login itself when it is an address, else login@domain for a hosted domain."""
        if self.config.send_as is not SendAsPolicy.ENFORCE or not session.authenticated:
            return True
        login = str(session.auth_data or "").lower()
        if "@" in login:
            allowed = {login}
        else:
            allowed = {f"{login}@{domain}" for domain in self.context.policy.domains}
        return sender.lower() in allowed

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Decide one recipient; an accepted one is added to the envelope here.

        Order, as in a Postfix configuration: the recipient limit, relay access,
        the DNS checks of client and sender (`checks.py`, skipped for trusted
        sessions), then the recipient itself (`RecipientPolicy.decide`).

        aiosmtpd's contract: a handler that defines `handle_RCPT` must append
        to `envelope.rcpt_tos` itself.
        """
        policy = self.context.policy
        sender = _sender(envelope.mail_from)
        client = client_address(session)
        authenticated = bool(session.authenticated)
        fields: dict[str, Any] = {}
        limit = self.config.max_recipients
        refusal: Refusal | None = None
        if limit is not None and len(envelope.rcpt_tos) >= limit:
            decision, reply = Decision.TOO_MANY_RECIPIENTS, S452_TOO_MANY_RECIPIENTS()
        elif refusal := await self._checks(envelope, address, sender, client, authenticated):
            decision, reply = Decision(refusal.check.value), refusal.reply
            fields["detail"] = refusal.detail
        else:
            decision, reply = policy.decide(
                address, sender=sender, client=client, authenticated=authenticated
            )
        if decision.accepted:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        self._command_event(
            "rcpt", reply, session, address=address, decision=str(decision), **fields
        )
        return reply

    async def _checks(
        self, envelope: Envelope, address: str, sender: str, client: str, authenticated: bool
    ) -> Refusal | None:
        """The DNS checks' refusal for this transaction, asked once and remembered."""
        checks = self.context.checks
        policy = self.context.policy
        if checks is None or not checks.enabled:
            return None
        if policy.trusted(client, authenticated=authenticated):
            return None
        if not policy.is_local(address) and not policy.may_relay(
            client, authenticated=authenticated
        ):
            return None  # relay access is refused first (reject_unauth_destination)
        if envelope not in self._verdicts:
            self._verdicts[envelope] = await checks.check(client, sender)
        return self._verdicts[envelope]

    # --- commands outside the transaction (`commands.py`) ----------------------------------------

    async def handle_VRFY(
        self, server: SMTP, session: Session, envelope: Envelope, argument: str
    ) -> str:
        """Answer VRFY as the server's `vrfy` setting says (called by `LabSMTP.smtp_VRFY`
        with the argument as the client gave it)."""
        decision, reply = vrfy_reply(
            self.context.policy,
            argument,
            client=client_address(session),
            authenticated=bool(session.authenticated),
        )
        self._command_event("vrfy", reply, session, address=argument, decision=decision)
        return reply

    async def handle_ETRN(
        self, server: SMTP, session: Session, envelope: Envelope, domain: str
    ) -> str:
        """Start a queue run for `domain` when this relay queues for it (RFC 1985)."""
        start, reply = etrn_reply(self.context.policy, domain)
        flushed = self.context.queue.flush(domain) if start and self.context.queue else 0
        decision = "queue-run" if start else "unavailable"
        self._command_event(
            "etrn", reply, session, domain=domain, decision=decision, flushed=flushed
        )
        return reply

    # --- message ------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Stamp a Received header, store local copies, queue the rest; 250 once all is durable
        (`ingest.accept_message`).

        Errors become a 4xx so that the client keeps the message and retries.
        """
        try:
            refusal = await self._dmarc(session, envelope)
            if refusal is not None:
                self._command_event(
                    "data",
                    refusal.reply,
                    session,
                    decision=str(refusal.check),
                    detail=refusal.detail,
                )
                return refusal.reply
            reply = await accept_message(
                self.context,
                session,
                envelope,
                sender=_sender(envelope.mail_from),
                encrypted=_encrypted(server),
            )
            self._command_event("data", reply, session)
            return reply
        except Exception as error:
            self.events.emit("error", stage="data", error=type(error).__name__, detail=str(error))
            reply = S451_LOCAL_ERROR()
            self._command_event("data", reply, session)
            return reply

    async def _dmarc(self, session: Session, envelope: Envelope) -> Refusal | None:
        """DMARC of an untrusted session's message, when the server checks it."""
        checks = self.context.checks
        if checks is None or checks.resolver is None or not checks.config.check_dmarc:
            return None
        client = client_address(session)
        if self.context.policy.trusted(client, authenticated=bool(session.authenticated)):
            return None
        content = envelope.original_content or envelope.content or b""
        message = content if isinstance(content, bytes) else content.encode()
        return await dmarc_refusal(checks.resolver, client, _sender(envelope.mail_from), message)

    # --- errors and events ----------------------------------------------------------------------

    async def handle_exception(self, error: Exception) -> str:
        """Any other hook failure: a 451 and an event, never aiosmtpd's 500 with the text."""
        if isinstance(error, TLSSetupException):
            # The handshake failed (e.g. the client rejected our certificate); the engine
            # drops the connection and sends nothing.
            cause = error.__cause__
            self.events.emit("tls-failed", port=self.listener.port, error=repr(cause))
        else:
            self.events.emit("error", error=type(error).__name__, detail=str(error))
        return S451_LOCAL_ERROR()

    def fault_event(self, session: Session, fault: str, **fields: Any) -> None:
        """Record a protocol-level fault the engine played (tarpit, slow banner, dropped DATA)."""
        self.events.emit(
            "fault",
            fault=fault,
            client=client_address(session),
            port=self.listener.port,
            **fields,
        )

    def tls_refused(self, reason: str) -> None:
        """A TLS 1.0/1.1-only listener turned a client's handshake down (`legacy_tls`)."""
        self.events.emit("tls-failed", port=self.listener.port, error=reason, legacy=True)

    def limit_reply(self, session: Session, decision: str) -> str:
        """The 421 for a session refused by a cap (`limits.py`) or idle too long; recorded."""
        hostname = self.config.hostname
        if decision == "timeout":
            verb, reply = None, S421_TIMEOUT(hostname=hostname)
        elif decision == "per-client":
            client = client_address(session)
            verb, reply = "connect", S421_TOO_MANY_FROM_CLIENT(hostname=hostname, client=client)
        else:
            verb, reply = "connect", S421_TOO_MANY(hostname=hostname)
        self.events.emit(
            "command",
            verb=verb,
            code=421,
            reply=reply,
            client=client_address(session),
            port=self.listener.port,
            decision=decision,
        )
        return reply

    def engine_reply(self, session: Session | None, verb: str | None, reply: str) -> None:
        """Record a policy refusal the engine made itself (STARTTLS first, AUTH required…)."""
        self.events.emit(
            "command",
            verb=verb,
            code=int(reply[:3]),
            reply=reply,
            client=client_address(session) if session else None,
            port=self.listener.port,
        )

    def _command_event(self, verb: str, reply: str, session: Session, **fields: Any) -> None:
        self.events.emit(
            "command",
            verb=verb,
            code=int(reply[:3]),
            reply=reply,
            client=client_address(session),
            port=self.listener.port,
            **fields,
        )


@functools.lru_cache(maxsize=4096)
def _loopback(client: str) -> bool:
    """Whether `client` is a loopback address (asked at every greeting: remembered)."""
    try:
        return ipaddress.ip_address(client).is_loopback
    except ValueError:
        return False


def _sender(mail_from: str | None) -> str:
    """The envelope sender; aiosmtpd gives the null reverse-path (bounces) as "<>"."""
    if not mail_from or mail_from == "<>":
        return NULL_SENDER
    return mail_from


def _encrypted(server: SMTP) -> bool:
    """True on an encrypted connection (after STARTTLS, or an implicit-TLS listener)."""
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _format_peer(peer: Any) -> str:
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
