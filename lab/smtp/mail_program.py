"""The customer's mail program: `send_mail` sends one message the way its settings say.

Resolve the server, connect, TLS (implicit or STARTTLS), AUTH, MAIL, RCPT,
DATA, QUIT, on an `SmtpSession`, then assemble a `SendResult`. Unlike the
session, `send_mail` never raises for network or protocol trouble: every
failure becomes an outcome, the stage where it stopped and the reply or reason,
worded as a support desk would read it ("connection to host:587 refused").
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from lab.addresses import ip_literal
from lab.net import (
    ConnectError,
    Connector,
    ConnectRefused,
    ConnectTimeout,
    HostUnreachable,
    NetworkUnreachable,
)
from lab.scenario.model import MailSettings, Outcome, Security, Stage
from lab.smtp import sasl
from lab.smtp.connection import Clock
from lab.smtp.errors import (
    ConnectionLost,
    ProtocolError,
    SmtpTimeout,
    TlsError,
    describe,
)
from lab.smtp.message import build_message, new_message_id
from lab.smtp.reply import SmtpReply
from lab.smtp.result import SendResult
from lab.smtp.session import SmtpSession
from lab.smtp.tls import client_tls_context
from lab.smtp.transcript import format_seconds

Resolve = Callable[[str], Awaitable[list[str]]]

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")


@dataclass
class _Verdict:
    """Where a submission ended, before the result is assembled."""

    outcome: Outcome
    stage: Stage | None
    text: str
    reply: SmtpReply | None = None


def _rejected(stage: Stage, reply: SmtpReply) -> _Verdict:
    return _Verdict(Outcome.REJECTED, stage, reply.text, reply)


def _banner_host(banner: SmtpReply | None) -> str | None:
    """The host name a greeting opens with (`220 mx.example.com ESMTP`), if it looks like one."""
    if banner is None or not banner.is_positive or not banner.lines:
        return None
    words = banner.lines[0].split()
    if not words or _HOSTNAME.fullmatch(words[0]) is None or words[0].isdigit():
        return None
    return words[0]


class _MailProgram:
    """One submission as a mail program performs it; see `send_mail`."""

    def __init__(
        self,
        settings: MailSettings,
        connector: Connector,
        resolve: Resolve,
        helo: str,
        ca_file: Path | None,
        clock: Clock | None,
    ) -> None:
        self.settings = settings
        self.resolve = resolve
        self.helo = settings.helo or helo
        self.ca_file = ca_file
        self.session = SmtpSession(connector, settings.timeout, clock=clock)
        self.message_id = new_message_id(self.helo)
        self.address: str | None = None
        self.accepted: list[str] = []
        self.rejected: dict[str, SmtpReply] = {}

    @property
    def where(self) -> str:
        return f"{self.settings.server}:{self.settings.port}"

    async def run(self) -> SendResult:
        verdict = await self._guarded()
        session = self.session
        # A rejected session still gets a polite QUIT (unless the server said 421, which
        # means it is closing); after a timeout, loss or TLS failure there is no one to tell.
        polite = verdict.outcome in (Outcome.DELIVERED, Outcome.REJECTED)
        if polite and not (verdict.reply is not None and verdict.reply.code == 421):
            await session.quit()
        await session.close()
        reply = verdict.reply
        return SendResult(
            outcome=verdict.outcome,
            stage=verdict.stage,
            code=reply.code if reply else None,
            enhanced=reply.enhanced if reply else None,
            text=verdict.text,
            transcript=session.transcript,
            timings=dict(session.timings),
            message_id=self.message_id,
            server_address=self.address,
            port=self.settings.port,
            accepted_by=_banner_host(session.banner),
            server=self.settings.server,
            accepted_recipients=list(self.accepted),
            rejected_recipients=dict(self.rejected),
            extensions=dict(session.extensions),
            tls=session.tls,
            authenticated=session.authenticated,
        )

    async def _guarded(self) -> _Verdict:
        """`_submit` with every network and protocol failure turned into a verdict."""
        waited = format_seconds(self.session.timeout)
        try:
            return await self._submit()
        except ConnectTimeout:
            text = f"connect timeout to {self.where} after {waited} s"
            return _Verdict(Outcome.CONNECT_TIMEOUT, Stage.CONNECT, text)
        except ConnectRefused:
            text = f"connection to {self.where} refused"
            return _Verdict(Outcome.CONNECT_REFUSED, Stage.CONNECT, text)
        except NetworkUnreachable:
            text = f"network unreachable for {self.where}"
            return _Verdict(Outcome.UNREACHABLE, Stage.CONNECT, text)
        except HostUnreachable:
            text = f"no route to {self.where}"
            return _Verdict(Outcome.UNREACHABLE, Stage.CONNECT, text)
        except ConnectError as error:
            text = f"cannot connect to {self.where}: {error.strerror or error}"
            return _Verdict(Outcome.UNREACHABLE, Stage.CONNECT, text)
        except SmtpTimeout as error:
            if error.stage is Stage.BANNER:
                text = f"no greeting from {self.where} within {waited} s"
                return _Verdict(Outcome.NO_BANNER, Stage.BANNER, text)
            # Outcome has no "timed out mid-session": the conversation is lost either way.
            text = f"server stopped answering: timed out after {waited} s at {error.stage}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)
        except ConnectionLost as error:
            if error.stage is Stage.BANNER:
                text = f"connection closed by {self.where} before the greeting"
            else:
                text = f"connection closed by {self.where} at {error.stage}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)
        except TlsError as error:
            return _Verdict(Outcome.TLS_FAILED, error.stage, error.reason)
        except ProtocolError as error:
            if error.stage is Stage.BANNER:
                # Something answers, but not an SMTP server (a web server, a TLS port).
                text = f"no SMTP greeting from {self.where}: {error}"
                return _Verdict(Outcome.NO_BANNER, Stage.BANNER, text)
            text = f"protocol error at {error.stage}: {error}"
            return _Verdict(Outcome.CONNECTION_LOST, error.stage, text)

    async def _submit(self) -> _Verdict:
        settings, session = self.settings, self.session
        dns_failure = await self._resolve()
        if dns_failure is not None:
            return dns_failure
        assert self.address is not None
        implicit = settings.security is Security.TLS
        await session.connect(
            self.address,
            settings.port,
            implicit_tls=implicit,
            ssl_context=self._tls_context(Stage.CONNECT) if implicit else None,
            server_hostname=settings.server if implicit else None,
        )
        banner = await session.read_banner()
        if not banner.is_positive:
            return _rejected(Stage.BANNER, banner)
        reply = await session.ehlo(self.helo)
        if not reply.is_positive:
            return _rejected(Stage.EHLO, reply)
        if settings.security is Security.STARTTLS:
            if not session.supports("STARTTLS"):
                text = f"server {self.where} does not offer STARTTLS (not in its EHLO reply)"
                session.note(text)
                return _Verdict(Outcome.TLS_FAILED, Stage.STARTTLS, text)
            reply = await session.starttls(self._tls_context(Stage.STARTTLS), settings.server)
            if reply.code != 220:
                return _rejected(Stage.STARTTLS, reply)
            reply = await session.ehlo(self.helo)
            if not reply.is_positive:
                return _rejected(Stage.EHLO, reply)
        if settings.auth is not None:
            verdict = await self._authenticate()
            if verdict is not None:
                return verdict
        return await self._transaction()

    def _tls_context(self, stage: Stage) -> ssl.SSLContext:
        # Built only when TLS is used: loading a trust store is not free.
        try:
            return client_tls_context(verify=self.settings.verify_tls, ca_file=self.ca_file)
        except (OSError, ssl.SSLError) as error:
            text = f"cannot load trusted certificates from {self.ca_file}: {describe(error)}"
            self.session.note(text)
            raise TlsError(stage, text) from error

    async def _resolve(self) -> _Verdict | None:
        """Find the server's address; a verdict when that fails."""
        server, session = self.settings.server, self.session
        literal = ip_literal(server)
        if literal is not None:
            self.address = str(literal)
            return None
        with session.measure(Stage.DNS):
            start = session.elapsed()
            try:
                addresses = await self.resolve(server)
            except Exception as error:  # whatever the resolver raises is a DNS failure
                text = str(error) or f"{type(error).__name__} resolving {server}"
                session.note(f"DNS lookup of {server} failed: {text}")
                return _Verdict(Outcome.DNS_FAILURE, Stage.DNS, text)
        if not addresses:
            text = f"{server} has no address"
            session.note(text)
            return _Verdict(Outcome.DNS_FAILURE, Stage.DNS, text)
        took = (session.elapsed() - start) * 1000
        session.note(f"{server} resolved to {', '.join(addresses)} in {took:.0f} ms")
        self.address = addresses[0]
        return None

    async def _authenticate(self) -> _Verdict | None:
        """AUTH as configured; a verdict when it did not succeed."""
        auth, session = self.settings.auth, self.session
        assert auth is not None
        session.add_secret(auth.password)
        mechanism: str = auth.mechanism
        if mechanism == "auto":
            if not session.supports("AUTH"):
                hint = "" if session.tls else "; servers often offer it only after STARTTLS"
                text = f"server {self.where} does not offer AUTH (not in its EHLO reply{hint})"
                session.note(text)
                return _Verdict(Outcome.AUTH_UNAVAILABLE, Stage.AUTH, text)
            offered = session.auth_mechanisms
            picked = sasl.pick_mechanism(offered)
            if picked is None:
                text = f"no supported AUTH mechanism offered (server offers {' '.join(offered)})"
                session.note(text)
                return _Verdict(Outcome.AUTH_UNAVAILABLE, Stage.AUTH, text)
            mechanism = picked
        reply = await session.auth(mechanism, auth.user, auth.password)
        if reply.code != 235:
            return _rejected(Stage.AUTH, reply)
        return None

    async def _transaction(self) -> _Verdict:
        """MAIL, RCPT for every recipient, DATA."""
        settings, session = self.settings, self.session
        message = build_message(settings, message_id=self.message_id)
        reply = await session.mail(settings.sender, size=len(message))
        if not reply.is_positive:
            return _rejected(Stage.MAIL, reply)
        first_refusal: SmtpReply | None = None
        for recipient in settings.to:
            reply = await session.rcpt(recipient)
            if reply.is_positive:
                self.accepted.append(recipient)
                continue
            self.rejected[recipient] = reply
            first_refusal = first_refusal or reply
            if reply.code == 421:  # the server is closing the session
                return _rejected(Stage.RCPT, reply)
        if not self.accepted:
            assert first_refusal is not None
            return _rejected(Stage.RCPT, first_refusal)
        reply = await session.data(message)
        if not reply.is_positive:
            return _rejected(Stage.DATA, reply)
        return _Verdict(Outcome.DELIVERED, Stage.DATA, reply.text, reply)


async def send_mail(
    settings: MailSettings,
    *,
    connector: Connector,
    resolve: Resolve,
    helo: str,
    ca_file: Path | None,
    clock: Clock | None = None,
) -> SendResult:
    """Send one message the way a mail program configured with `settings` does.

    Resolve `settings.server` with `resolve` (skipped for an IP literal), connect
    to the first address, TLS as `settings.security` says (implicit at connect,
    or STARTTLS then EHLO again), AUTH when configured ("auto" prefers PLAIN,
    then LOGIN, then CRAM-MD5 among what EHLO offers; a forced mechanism is sent
    regardless), MAIL, RCPT per recipient, DATA, QUIT.

    Never raises for network or protocol trouble: every failure is a `SendResult`
    with the outcome, the stage where it stopped and the reply or reason. An
    unreadable `ca_file` is a TLS failure too.

    Args:
        settings: the mail program's configuration.
        connector: opens TCP connections from where the program runs.
        resolve: name -> addresses; any exception it raises is a DNS failure.
        helo: the EHLO name (the machine's host name) unless `settings.helo` is set.
        ca_file: trust anchor when `settings.verify_tls` (None: the system's).
        clock: monotonic seconds; injectable for tests.

    Raises:
        ValueError: an address or the HELO name contains a line break (a broken
            configuration, refused rather than sent as an injected command).
    """
    program = _MailProgram(settings, connector, resolve, helo, ca_file, clock)
    return await program.run()
