"""Outbound SMTP: hand one queue entry's recipients for one domain to the next hop.

`Deliverer.deliver` tries the hops a `RouteDecision` lists, in order. On each
it connects (`QueueConfig.connect_timeout`), reads the banner, says EHLO with
the relay's hostname (HELO when EHLO is refused), upgrades with STARTTLS when
offered, logs in when the hop has a login (a smart host's) and offers AUTH, then
MAIL FROM, one RCPT per recipient and DATA. Every recipient gets
one result:

- 2xx to the final dot: delivered;
- 5xx to MAIL, RCPT or DATA: failed, the sender gets a bounce carrying the reply;
- 4xx to MAIL, RCPT or DATA: deferred, the queue retries later.

Trouble with the host rather than an answer about the mail (no TCP connection,
no or a refusing banner, EHLO refused, 421, timeouts, a dropped connection)
moves on to the next hop, like an MTA walking down the MX list; what is still
undecided after the last hop is deferred with that error (or failed, when the
last host refused permanently, e.g. a `554` banner).

TLS is opportunistic, as on the public MX network (Postfix's
`smtp_tls_security_level = may`): without `ca_file` any certificate is
accepted (encryption without authentication); with `ca_file` set the
certificate is verified first. When verification fails, the relay does not fall back to
plaintext (that would throw away the encryption an attacker could not
prevent anyway); it reconnects and delivers over TLS without verification,
the way MTAs that only log "Untrusted TLS connection established" behave.
When the TLS handshake itself fails (no common version or cipher, the server
hangs up), it reconnects and delivers without STARTTLS. Both fallbacks are
separate connections, each logged as its own `delivery-attempt` event with
its whole transcript, so a trainee sees the failure and the way around it.

Error texts follow the wording of Postfix's logs and bounces ("connect to
mx.example.net[10.0.0.5]:25: Connection timed out", "lost connection with ...
while receiving the initial server greeting") because that is what support
staff meet in real bounces.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lab.net import ConnectError, ConnectRefused, ConnectTimeout, HostUnreachable
from lab.nodes.mailserver.dsn import LOCAL_DIAGNOSTIC, SMTP_DIAGNOSTIC
from lab.scenario.model import Stage
from lab.smtp import sasl
from lab.smtp.errors import ConnectionLost, ProtocolError, SmtpTimeout, TlsError
from lab.smtp.reply import SmtpReply
from lab.smtp.session import SmtpSession
from lab.smtp.tls import client_tls_context
from lab.smtp.transcript import Direction

if TYPE_CHECKING:
    from pathlib import Path

    from lab.net import Connector
    from lab.nodes.events import EventLog
    from lab.nodes.mailserver.routing import Hop, RouteDecision

# SMTP commands may take much longer than a TCP connect (a tarpit banner, a slow
# content filter after DATA); a few connect timeouts, never less than 10 s.
MIN_COMMAND_TIMEOUT = 10.0
COMMAND_TIMEOUT_FACTOR = 5.0

# What the client was doing when a connection broke, as Postfix words it.
_WHILE = {
    Stage.CONNECT: "connecting",
    Stage.BANNER: "receiving the initial server greeting",
    Stage.EHLO: "performing the EHLO handshake",
    Stage.STARTTLS: "performing the TLS handshake",
    Stage.MAIL: "sending MAIL FROM",
    Stage.RCPT: "sending RCPT TO",
    Stage.DATA: "sending message body",
}


def command_timeout_for(connect_timeout: float) -> float:
    """The per-command timeout that goes with a connect timeout."""
    return max(MIN_COMMAND_TIMEOUT, COMMAND_TIMEOUT_FACTOR * connect_timeout)


class Outcome(StrEnum):
    """What became of one recipient in one delivery attempt."""

    DELIVERED = "delivered"
    FAILED = "failed"  # permanent: bounce
    DEFERRED = "deferred"  # temporary: retry later


@dataclass(frozen=True)
class RecipientResult:
    """One recipient's result; the fields a deferral event or a DSN group needs.

    `diagnostic` is the remote reply ("550 5.1.1 <bob@...>: ...") when
    `diagnostic_type` is "smtp", else this relay's own words. `stage` is the
    command the reply answered ("RCPT TO"); `hop` is "name[address]:port".
    """

    recipient: str
    outcome: Outcome
    status: str
    diagnostic: str
    diagnostic_type: str = SMTP_DIAGNOSTIC
    remote_mta: str | None = None
    hop: str | None = None
    stage: str | None = None


class TlsMode(StrEnum):
    """How a connection treats STARTTLS (see the module docstring)."""

    VERIFY = "verify"  # STARTTLS, certificate checked against ca_file
    ENCRYPT = "encrypt"  # STARTTLS, any certificate
    PLAIN = "plain"  # no STARTTLS (after a handshake failure)


@dataclass(frozen=True)
class _Problem:
    """Why a host could not take the mail (the recipients stay undecided)."""

    status: str
    diagnostic: str
    diagnostic_type: str
    stage: str | None = None
    code: int | None = None
    enhanced: str | None = None

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")


@dataclass
class _Session:
    """The result of one connection to one hop."""

    decided: dict[str, RecipientResult] = field(default_factory=dict)
    problem: _Problem | None = None  # set when the host failed before deciding all
    retry_with: TlsMode | None = None  # reconnect to the same hop in this mode
    last_reply: SmtpReply | None = None


class Deliverer:
    """Delivers over SMTP on behalf of one relay."""

    def __init__(
        self,
        *,
        hostname: str,
        connector: Connector,
        events: EventLog,
        connect_timeout: float,
        command_timeout: float,
        ca_file: Path | None,
    ) -> None:
        self.hostname = hostname
        self.connector = connector
        self.events = events
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.ca_file = ca_file
        self._contexts: dict[TlsMode, ssl.SSLContext] = {}

    def _context(self, mode: TlsMode) -> ssl.SSLContext:
        # Built once: loading a trust store on every connection is not free.
        if mode not in self._contexts:
            verify = mode is TlsMode.VERIFY
            self._contexts[mode] = client_tls_context(verify=verify, ca_file=self.ca_file)
        return self._contexts[mode]

    async def deliver(
        self,
        *,
        queue_id: str,
        sender: str,
        recipients: list[str],
        data: bytes,
        route: RouteDecision,
    ) -> list[RecipientResult]:
        """One result per recipient, in the order given.

        Args:
            queue_id: for the events.
            sender: the envelope sender; "" is sent as `MAIL FROM:<>` (bounces).
            recipients: all of one domain (they share `route`).
            data: the message.
            route: where to go; a route failure decides every recipient at once.
        """
        if route.failure is not None:
            outcome = Outcome.FAILED if route.failure.permanent else Outcome.DEFERRED
            return [
                RecipientResult(
                    recipient,
                    outcome,
                    route.failure.status,
                    route.failure.text,
                    LOCAL_DIAGNOSTIC,
                )
                for recipient in recipients
            ]
        results: dict[str, RecipientResult] = {}
        pending = list(recipients)
        problem = _Problem("4.4.4", f"no mail host for {route.domain}", LOCAL_DIAGNOSTIC)
        last_hop: Hop | None = None
        for hop in route.hops:
            last_hop = hop
            mode = TlsMode.VERIFY if self.ca_file is not None else TlsMode.ENCRYPT
            while True:
                session = await self._session(queue_id, sender, pending, data, hop, mode)
                if session.retry_with is None:
                    break
                mode = session.retry_with
            results.update(session.decided)
            pending = [recipient for recipient in pending if recipient not in results]
            if session.problem is not None:
                problem = session.problem
            if not pending:
                break
        for recipient in pending:
            results[recipient] = RecipientResult(
                recipient,
                # A permanent refusal by the last host there is (a 554 banner) bounces.
                Outcome.FAILED if problem.permanent else Outcome.DEFERRED,
                problem.status,
                problem.diagnostic,
                problem.diagnostic_type,
                remote_mta=last_hop.hostname
                if last_hop and problem.diagnostic_type == SMTP_DIAGNOSTIC
                else None,
                hop=str(last_hop) if last_hop else None,
                stage=problem.stage,
            )
        return [results[recipient] for recipient in recipients]

    async def _session(
        self,
        queue_id: str,
        sender: str,
        recipients: list[str],
        data: bytes,
        hop: Hop,
        mode: TlsMode,
    ) -> _Session:
        """One connection to `hop`; always closed and logged as a `delivery-attempt`."""
        session = SmtpSession(self.connector, self.connect_timeout)
        result = _Session()
        started = time.monotonic()
        try:
            await self._converse(session, result, sender, recipients, data, hop, mode)
        except ConnectError as error:
            result.problem = _Problem("4.4.1", _connect_error(hop, error), LOCAL_DIAGNOSTIC)
        except TlsError as error:
            result.retry_with = _tls_retry(mode, error)
            result.problem = _Problem(
                "4.7.5", f"TLS handshake with {_peer(hop)} failed: {error.reason}", LOCAL_DIAGNOSTIC
            )
            if result.retry_with is TlsMode.ENCRYPT:
                session.note(f"certificate not trusted: reconnecting to {hop} for unverified TLS")
            elif result.retry_with is TlsMode.PLAIN:
                session.note(f"reconnecting to {hop} without STARTTLS")
        except SmtpTimeout as error:
            text = f"conversation with {_peer(hop)} timed out while {_while(error.stage)}"
            result.problem = _Problem("4.4.2", text, LOCAL_DIAGNOSTIC)
        except ConnectionLost as error:
            text = f"lost connection with {_peer(hop)} while {_while(error.stage)}"
            result.problem = _Problem("4.4.2", text, LOCAL_DIAGNOSTIC)
        except ProtocolError as error:
            text = f"protocol error with {_peer(hop)} while {_while(error.stage)}: {error}"
            result.problem = _Problem("4.5.0", text, LOCAL_DIAGNOSTIC)
        finally:
            await session.close()
            self._log_attempt(queue_id, recipients, hop, mode, session, result, started)
        return result

    async def _converse(
        self,
        session: SmtpSession,
        result: _Session,
        sender: str,
        recipients: list[str],
        data: bytes,
        hop: Hop,
        mode: TlsMode,
    ) -> None:
        await session.connect(hop.address, hop.port)
        # The connect timeout is spent; from here on commands get the longer one.
        session.timeout = self.command_timeout
        banner = await session.read_banner()
        result.last_reply = banner
        if not banner.is_positive:
            # No command was sent yet: the greeting itself refused us (no stage to name).
            result.problem = _refused(banner, None)
            await session.quit()
            return
        reply = await session.ehlo(self.hostname)
        result.last_reply = reply
        if not reply.is_positive:
            result.problem = _refused(reply, "EHLO/HELO")
            await session.quit()
            return
        if mode is not TlsMode.PLAIN and session.supports("STARTTLS"):
            tls = await session.starttls(self._context(mode), hop.hostname)
            result.last_reply = tls
            if tls.code == 220:
                reply = await session.ehlo(self.hostname)
                result.last_reply = reply
                if not reply.is_positive:
                    result.problem = _refused(reply, "EHLO/HELO")
                    await session.quit()
                    return
            else:
                # Opportunistic: STARTTLS refused (454) leaves a usable plaintext session.
                session.note("STARTTLS refused: continuing without TLS")
        if hop.login is not None and session.auth_mechanisms:
            result.problem = await _log_in(session, hop, hop.login)
            if result.problem is not None:
                await session.quit()
                return
        reply = await session.mail(sender, size=len(data))
        result.last_reply = reply
        if reply.code == 421:
            result.problem = _refused(reply, "MAIL FROM")
            return
        if not reply.is_positive:
            for recipient in recipients:
                result.decided[recipient] = _answer(recipient, hop, reply, "MAIL FROM")
            await session.quit()
            return
        accepted: list[str] = []
        for recipient in recipients:
            reply = await session.rcpt(recipient)
            result.last_reply = reply
            if reply.is_positive:
                accepted.append(recipient)
            elif reply.code == 421:  # closing: what is not decided goes to the next hop
                result.problem = _refused(reply, "RCPT TO")
                return
            else:
                result.decided[recipient] = _answer(recipient, hop, reply, "RCPT TO")
        if not accepted:
            await session.quit()
            return
        reply = await session.data(data)
        result.last_reply = reply
        if reply.code == 421:
            result.problem = _refused(reply, "DATA")
            return
        stage = "end of DATA" if _body_sent(session) else "DATA"
        for recipient in accepted:
            result.decided[recipient] = _answer(recipient, hop, reply, stage)
        await session.quit()

    def _log_attempt(
        self,
        queue_id: str,
        recipients: list[str],
        hop: Hop,
        mode: TlsMode,
        session: SmtpSession,
        result: _Session,
        started: float,
    ) -> None:
        reply = result.last_reply
        fields: dict[str, Any] = {
            "queue_id": queue_id,
            "recipients": recipients,
            "host": hop.hostname,
            "address": hop.address,
            "port": hop.port,
            "tls_mode": str(mode),
            "tls": session.tls.to_json() if session.tls else None,
            "code": reply.code if reply else None,
            "enhanced": reply.enhanced if reply else None,
            "text": str(reply) if reply else None,
        }
        if result.problem is not None and result.problem.diagnostic_type != SMTP_DIAGNOSTIC:
            # No reply decided this connection: say what went wrong instead.
            fields.update(code=None, enhanced=result.problem.status, text=result.problem.diagnostic)
        fields["results"] = {
            recipient: {"outcome": str(r.outcome), "status": r.status, "reply": r.diagnostic}
            for recipient, r in result.decided.items()
        }
        fields["duration"] = round(time.monotonic() - started, 4)
        fields["transcript"] = session.transcript.to_json()
        self.events.emit("delivery-attempt", **fields)


# --- helpers ---------------------------------------------------------------------------------


def _peer(hop: Hop) -> str:
    return f"{hop.hostname}[{hop.address}]"


def _while(stage: Stage | None) -> str:
    return _WHILE.get(stage, "talking to it") if stage else "talking to it"


def _status(reply: SmtpReply) -> str:
    """The reply's enhanced code, else one derived from its class (RFC 3463 §3.1)."""
    return reply.enhanced or f"{reply.code // 100}.0.0"


def _answer(recipient: str, hop: Hop, reply: SmtpReply, stage: str) -> RecipientResult:
    if reply.is_positive:
        outcome = Outcome.DELIVERED
    elif reply.is_permanent:
        outcome = Outcome.FAILED
    else:
        outcome = Outcome.DEFERRED
    return RecipientResult(
        recipient,
        outcome,
        _status(reply),
        str(reply),
        SMTP_DIAGNOSTIC,
        remote_mta=hop.hostname,
        hop=str(hop),
        stage=stage,
    )


def _refused(reply: SmtpReply, stage: str | None) -> _Problem:
    """The host turned the session down: try the next one; its reply is the diagnostic."""
    return _Problem(_status(reply), str(reply), SMTP_DIAGNOSTIC, stage, reply.code, reply.enhanced)


async def _log_in(session: SmtpSession, hop: Hop, login: tuple[str, str]) -> _Problem | None:
    """AUTH at a hop that offers it, as Postfix's smtp client with a password map does;
    None when logged in. A hop that offers no AUTH gets the mail without (Postfix too).

    A refused login is the relay's configuration, not the mail: like Postfix's default
    `smtp_sasl_auth_soft_bounce = yes` the mail waits (the 5 of a 535 becomes a 4) and
    the next hop is tried."""
    mechanism = sasl.pick_mechanism(session.auth_mechanisms)
    if mechanism is None:
        text = "SASL authentication failed; cannot authenticate to server"
        text += f" {_peer(hop)}: no mechanism available"
        return _Problem("4.7.0", text, LOCAL_DIAGNOSTIC, "AUTH")
    reply = await session.auth(mechanism, *login)
    if reply.code == 235:
        return None
    status = "4" + _status(reply)[1:]
    text = f"SASL authentication failed; server {_peer(hop)} said: {reply}"
    return _Problem(status, text, LOCAL_DIAGNOSTIC, "AUTH", reply.code, reply.enhanced)


def _body_sent(session: SmtpSession) -> bool:
    """Whether the reply came after the message (to the final dot) or to DATA itself."""
    return any(
        line.direction is Direction.CLIENT and line.text == "." for line in session.transcript.lines
    )


def _connect_error(hop: Hop, error: ConnectError) -> str:
    if isinstance(error, ConnectTimeout):
        reason = "Connection timed out"
    elif isinstance(error, ConnectRefused):
        reason = "Connection refused"
    elif isinstance(error, HostUnreachable):
        reason = "No route to host"
    else:
        reason = error.strerror or str(error) or "cannot connect"
    return f"connect to {hop}: {reason}"


def _tls_fallback(mode: TlsMode, error: TlsError) -> TlsMode:
    """Verification failed: encrypt without verifying. Anything else: no TLS."""
    cause = error.__cause__
    verification = isinstance(cause, ssl.SSLCertVerificationError) or error.reason.startswith(
        "CERTIFICATE_VERIFY_FAILED"
    )
    if mode is TlsMode.VERIFY and verification:
        return TlsMode.ENCRYPT
    return TlsMode.PLAIN


def _tls_retry(mode: TlsMode, error: TlsError) -> TlsMode | None:
    """The mode to reconnect in, None when there is nothing left to fall back to."""
    return None if mode is TlsMode.PLAIN else _tls_fallback(mode, error)
