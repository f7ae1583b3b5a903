"""Mail server policy: aiosmtpd handler hooks that decide each command and return the reply.

The engine (aiosmtpd's `SMTP`, extended in `server.py`) owns the protocol;
everything a scenario can configure is decided here: who is a local
recipient, unknown users, mailbox states, greylisting, relaying, the
connection rate limit, send-as, the recipient limit, the DNS checks of the
client and the sender (`checks.py`), and where an accepted message goes (the
mailbox store, or the relay's outbound queue).

`RecipientPolicy` makes the RCPT decision without I/O, so it is tested as a
table; `MailHandler` wires it to the engine, the store, the queue and the
event log.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import re
import secrets
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aiosmtpd.proxy_protocol import ProxyData
from aiosmtpd.smtp import SMTP, Envelope, Session, TLSSetupException

from lab.nodes.config import GreylistConfig, ListenerConfig, MailServerConfig, RateLimitConfig
from lab.nodes.events import EventLog
from lab.nodes.mailserver.auth import client_address
from lab.nodes.mailserver.checks import ClientChecks, Refusal
from lab.nodes.mailserver.store import MailStore
from lab.replies import (
    S250_QUEUED,
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S421_TOO_MANY,
    S451_GREYLISTED,
    S451_LOCAL_ERROR,
    S452_MAILBOX_FULL,
    S452_TOO_MANY_RECIPIENTS,
    S550_MAILBOX_DISABLED,
    S550_SEND_AS_DENIED,
    S550_USER_UNKNOWN,
    S552_OVER_QUOTA,
    S554_NO_SERVICE,
    S554_RELAY_DENIED,
    Reply,
)
from lab.scenario.model import AuthPolicy, MailboxState, SendAsPolicy

NULL_SENDER = ""
_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


class RelayQueue(Protocol):
    """The relay's outbound queue as the inbound side uses it (`queue.OutboundQueue`)."""

    async def start(self) -> None:
        """Begin delivering what is queued."""
        ...

    async def stop(self) -> None:
        """Stop delivering; what is queued stays on disk."""
        ...

    async def enqueue(
        self,
        *,
        sender: str,
        recipients: list[str],
        data: bytes,
        client_address: str,
        helo: str,
        authenticated_as: str | None,
    ) -> str:
        """Queue a message for `recipients`, durably, and return its queue id."""
        ...


# --- the RCPT decision ---------------------------------------------------------------------


class Decision(StrEnum):
    """What happens to one recipient; also the `decision` field of "rcpt" events."""

    LOCAL = "local"
    RELAY = "relay"
    USER_UNKNOWN = "user-unknown"
    MAILBOX_FULL = "mailbox-full"
    OVER_QUOTA = "over-quota"
    DISABLED = "disabled"
    GREYLISTED = "greylisted"
    RELAY_DENIED = "relay-denied"
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    # the DNS checks (`checks.Check` has the same values)
    UNKNOWN_CLIENT = "unknown-client"
    DNSBL_LISTED = "dnsbl-listed"
    SENDER_DOMAIN_UNKNOWN = "sender-domain-unknown"
    SPF_FAIL = "spf-fail"

    @property
    def accepted(self) -> bool:
        """True when the recipient is taken (for local delivery or for relaying)."""
        return self in (Decision.LOCAL, Decision.RELAY)


_STATE_DECISIONS: dict[MailboxState, tuple[Decision, Reply]] = {
    MailboxState.FULL: (Decision.MAILBOX_FULL, S452_MAILBOX_FULL),
    MailboxState.OVER_QUOTA: (Decision.OVER_QUOTA, S552_OVER_QUOTA),
    MailboxState.DISABLED: (Decision.DISABLED, S550_MAILBOX_DISABLED),
}


@dataclass
class Greylist:
    """The first (client, sender, recipient) attempt is refused; one after `delay` passes.

    A retry that comes too early is refused again without restarting the
    clock, as postgrey does. Triplets are remembered for the server's lifetime.
    """

    config: GreylistConfig
    clock: Callable[[], float]
    _first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def applies_to(self, recipient: str) -> bool:
        """Whether `recipient` is greylisted at all (an empty list means everyone).

        Entries are addresses; an entry without "@" stands for a whole domain.
        """
        wanted = self.config.recipients
        if not wanted:
            return True
        domain = recipient.rpartition("@")[2]
        return any(entry.lower() in (recipient, domain) for entry in wanted)

    def passes(self, client: str, sender: str, recipient: str) -> bool:
        """True once the triplet was first seen at least `delay` seconds ago."""
        key = (client, sender, recipient)
        now = self.clock()
        first = self._first_seen.get(key)
        if first is None:
            self._first_seen[key] = now
            return False
        return now - first >= self.config.delay


@dataclass
class RateLimiter:
    """At most `connections` sessions per client address within a sliding window of `per`
    seconds; refused attempts do not count, so a client that waits a window gets in again.

    One per server, shared by its listeners (those the limit names).
    """

    config: RateLimitConfig
    clock: Callable[[], float]
    _served: dict[str, deque[float]] = field(default_factory=dict)

    def applies_to(self, port: int) -> bool:
        """Whether sessions on lab port `port` are limited."""
        return not self.config.ports or port in self.config.ports

    def admit(self, client: str) -> bool:
        """Count a new session from `client`; False when it is one too many."""
        now = self.clock()
        served = self._served.setdefault(client, deque())
        while served and now - served[0] >= self.config.per:
            served.popleft()
        if len(served) >= self.config.connections:
            return False
        served.append(now)
        return True


class RecipientPolicy:
    """Decides RCPT for one server, in a fixed order (no I/O).

    Local domain → mailbox known? → mailbox state → greylist → accept.
    Other domains: relay when allowed (relays only), else "Relay access denied".
    """

    def __init__(
        self, config: MailServerConfig, *, can_relay: bool, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.domains = {domain.lower() for domain in config.domains}
        self.mailboxes = {address.lower(): state for address, state in config.mailboxes.items()}
        self.can_relay = can_relay and config.role == "relay"
        self.networks = [
            ipaddress.ip_network(cidr, strict=False) for cidr in config.permit_relay.networks
        ]
        self.greylist = Greylist(config.greylist, clock) if config.greylist else None

    def is_local(self, address: str) -> bool:
        """True when `address`'s domain is one this server hosts mailboxes for."""
        return address.rpartition("@")[2].lower() in self.domains

    def decide(
        self, address: str, *, sender: str, client: str, authenticated: bool
    ) -> tuple[Decision, str]:
        """The decision for recipient `address` and the reply line to send."""
        recipient = address.lower()
        if self.is_local(recipient):
            state = self.mailboxes.get(recipient)
            if state is None:
                return Decision.USER_UNKNOWN, S550_USER_UNKNOWN(address=address)
            if state in _STATE_DECISIONS:
                decision, reply = _STATE_DECISIONS[state]
                return decision, reply(address=address)
            greylist = self.greylist
            if (
                greylist is not None
                and greylist.applies_to(recipient)
                and not greylist.passes(client, sender.lower(), recipient)
            ):
                return Decision.GREYLISTED, S451_GREYLISTED(address=address)
            return Decision.LOCAL, S250_RECIPIENT_OK(address=address)
        if self.may_relay(client, authenticated=authenticated):
            return Decision.RELAY, S250_RECIPIENT_OK(address=address)
        return Decision.RELAY_DENIED, S554_RELAY_DENIED(address=address)

    def trusted(self, client: str, *, authenticated: bool) -> bool:
        """Authenticated, or from a network allowed to relay: Postfix's permit_sasl_authenticated
        and permit_mynetworks, which come before the DNS checks of the client."""
        if authenticated:
            return True
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def may_relay(self, client: str, *, authenticated: bool) -> bool:
        """Relays only: an authenticated session (if allowed) or a permitted network."""
        if not self.can_relay:
            return False
        if authenticated and self.config.permit_relay.authenticated:
            return True
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.networks)


# --- the handler ------------------------------------------------------------------------------


@dataclass
class MailContext:
    """What every listener of one server shares."""

    config: MailServerConfig
    store: MailStore
    events: EventLog
    policy: RecipientPolicy
    queue: RelayQueue | None = None
    checks: ClientChecks | None = None
    limiter: RateLimiter | None = None


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
        if client in self.config.fault_exempt:
            return True
        try:
            return ipaddress.ip_address(client).is_loopback
        except ValueError:
            return False

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
        return kept

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

    # --- message ------------------------------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Stamp a Received header, store local copies, queue the rest; 250 once all is durable.

        Errors become a 4xx so that the client keeps the message and retries.
        """
        try:
            return await self._accept(server, session, envelope)
        except Exception as error:
            self.events.emit("error", stage="data", error=type(error).__name__, detail=str(error))
            reply = S451_LOCAL_ERROR()
            self._command_event("data", reply, session)
            return reply

    async def _accept(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)  # the engine runs with decode_data=False
        sender = _sender(envelope.mail_from)
        recipients = list(dict.fromkeys(envelope.rcpt_tos))
        policy = self.context.policy
        local = list(dict.fromkeys(r.lower() for r in recipients if policy.is_local(r)))
        relayed = [r for r in recipients if not policy.is_local(r)]
        transaction = secrets.token_hex(6).upper()
        data = self._received(server, session, transaction, recipients) + content
        message_id = _message_id(content)
        queue_id = None
        # Concurrently, so that the copies share one group commit in the store.
        stored = await asyncio.gather(
            *(self.context.store.deliver(mailbox, data) for mailbox in local)
        )
        for mailbox, stored_id in zip(local, stored, strict=True):
            self.events.emit("stored", mailbox=mailbox, id=stored_id, message_id=message_id)
        if relayed:
            assert self.context.queue is not None  # RCPT refuses relaying without a queue
            queue_id = await self.context.queue.enqueue(
                sender=sender,
                recipients=relayed,
                data=data,
                client_address=client_address(session),
                helo=session.host_name or "",
                authenticated_as=session.auth_data if session.authenticated else None,
            )
        self.events.emit(
            "accepted",
            id=transaction,
            queue_id=queue_id,
            message_id=message_id,
            sender=sender,
            local=local,
            relayed=relayed,
            size=len(content),
            client=client_address(session),
        )
        reply = S250_QUEUED(queue_id=queue_id or transaction)
        self._command_event("data", reply, session)
        return reply

    def _received(
        self, server: SMTP, session: Session, transaction: str, recipients: list[str]
    ) -> bytes:
        """The trace header (RFC 5321 §4.4), with the protocol named as in RFC 3848."""
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if _encrypted(server):
            protocol += "S"
        if session.authenticated:
            protocol += "A"
        helo = _printable(session.host_name or "unknown")
        client = client_address(session)
        lines = [
            f"Received: from {helo} ([{client}])",
            f"\tby {self.config.hostname} (smtp-lab) with {protocol} id {transaction}",
        ]
        if len(recipients) == 1:
            lines.append(f"\tfor <{_printable(recipients[0])}>")
        lines[-1] += f"; {email.utils.formatdate(localtime=True)}"
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "replace")

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


def _sender(mail_from: str | None) -> str:
    """The envelope sender; aiosmtpd gives the null reverse-path (bounces) as "<>"."""
    if not mail_from or mail_from == "<>":
        return NULL_SENDER
    return mail_from


def _message_id(content: bytes) -> str | None:
    """The Message-ID header's value, looked up in the header block only."""
    end = content.find(b"\r\n\r\n")
    headers = content if end < 0 else content[: end + 2]
    match = _MESSAGE_ID.search(headers)
    return match.group(1).decode("utf-8", "replace") if match else None


def _encrypted(server: SMTP) -> bool:
    """True on an encrypted connection (after STARTTLS, or an implicit-TLS listener)."""
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def _format_peer(peer: Any) -> str:
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


def _printable(text: str) -> str:
    """Text safe inside a header: no control characters, nothing that ends the line."""
    return "".join(char if char.isprintable() else "?" for char in text)
