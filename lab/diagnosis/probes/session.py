"""The main session: one SMTP conversation held exactly as the mail program holds it.

`MainSession` answers the planner's session requests (`OpenSession`,
`ReadBanner`, `SayHello`, `StartTls`, `Authenticate`, `MailFrom`, `RcptTo`,
`SendData`, `EndSession`) on one connection, with the mail program's TLS
verification and login. Each result carries the transcript lines since the
previous request, so every step shows its own part of the conversation. It
remembers what the hand-off needs (`handoff`) for following the message.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from lab.diagnosis.probes.context import ProbeContext, insecure_context
from lab.diagnosis.probes.failures import EXPECTED, failure_of
from lab.diagnosis.requests import (
    Ack,
    Authenticate,
    Failure,
    HelloResult,
    MailFrom,
    OpenSession,
    RcptResult,
    SessionResult,
    StartTls,
    StartTlsResult,
)
from lab.scenario.model import Outcome, Stage
from lab.smtp.message import build_message, new_message_id
from lab.smtp.reply import SmtpReply, parse_extensions
from lab.smtp.result import SendResult
from lab.smtp.session import SmtpSession
from lab.smtp.transcript import Transcript, TranscriptLine

_T = TypeVar("_T")


class MainSession:
    """The mail program's own conversation, one request at a time.

    Args:
        context: the target, the settings and the clock.
    """

    def __init__(self, context: ProbeContext) -> None:
        self.context = context
        self.message_id = new_message_id(context.helo)
        self.session: SmtpSession | None = None
        self.last_session: SmtpSession | None = None
        self.address: str | None = None
        self.accepted: list[str] = []
        self.rejected: dict[str, SmtpReply] = {}
        self.data_reply: SmtpReply | None = None
        self._message: bytes | None = None
        self._mark = 0

    async def open(self, request: OpenSession) -> SessionResult:
        """Connect as the mail program does (with its verified handshake for implicit TLS)."""
        context = self.context
        start = context.clock()
        await self.end(polite=False)
        session = SmtpSession(
            context.target.connector, context.settings.timeout, clock=context.clock
        )
        if context.settings.auth is not None:
            session.add_secret(context.settings.auth.password)
        self.session, self._mark, self.address = session, 0, request.address
        tls = None
        if request.implicit_tls:
            try:
                tls = context.verify_context() if request.verify else insecure_context()
            except (OSError, ssl.SSLError) as error:
                detail = f"cannot load trusted certificates from {context.target.ca_file}: {error}"
                session.note(detail)
                return SessionResult(
                    failure=Failure("tls", detail),
                    transcript=self._take(),
                    duration=context.clock() - start,
                )
        try:
            await session.connect(
                request.address,
                request.port,
                implicit_tls=request.implicit_tls,
                ssl_context=tls,
                server_hostname=context.server_name if request.implicit_tls else None,
            )
        except EXPECTED as error:
            return SessionResult(
                failure=failure_of(error), transcript=self._take(), duration=context.clock() - start
            )
        return SessionResult(
            tls=session.tls, transcript=self._take(), duration=context.clock() - start
        )

    async def read_banner(self) -> SessionResult:
        """Wait for the greeting."""
        return await self._reply(lambda s: s.read_banner())

    async def say_hello(self, name: str) -> HelloResult:
        """EHLO (HELO fallback)."""
        start = self.context.clock()
        session = self.session
        if session is None:
            return HelloResult(failure=Failure("closed", "the session is not open"))
        try:
            hello = await _hello(session, name)
        except EXPECTED as error:
            hello = HelloResult(failure=failure_of(error))
        return HelloResult(
            reply=hello.reply,
            ehlo_reply=hello.ehlo_reply,
            helo_fallback=hello.helo_fallback,
            extensions=hello.extensions,
            failure=hello.failure,
            transcript=self._take(),
            duration=self.context.clock() - start,
        )

    async def start_tls(self, request: StartTls) -> StartTlsResult:
        """STARTTLS with the mail program's verification, then EHLO again."""
        context = self.context
        start = context.clock()
        session = self.session
        if session is None:
            return StartTlsResult(failure=Failure("closed", "the session is not open"))
        try:
            tls = context.verify_context() if request.verify else insecure_context()
        except (OSError, ssl.SSLError) as error:
            detail = f"cannot load trusted certificates from {context.target.ca_file}: {error}"
            return StartTlsResult(failure=Failure("tls", detail), transcript=self._take())
        try:
            reply = await session.starttls(tls, context.server_name)
            if reply.code != 220:
                return StartTlsResult(
                    reply=reply, transcript=self._take(), duration=context.clock() - start
                )
            try:
                hello = await _hello(session, request.helo)
            except EXPECTED as error:
                hello = HelloResult(failure=failure_of(error))
        except EXPECTED as error:
            return StartTlsResult(
                failure=failure_of(error), transcript=self._take(), duration=context.clock() - start
            )
        return StartTlsResult(
            reply=reply,
            tls=session.tls,
            hello=hello,
            transcript=self._take(),
            duration=context.clock() - start,
        )

    async def authenticate(self, request: Authenticate) -> SessionResult:
        """AUTH with the requested mechanism."""
        return await self._reply(
            lambda s: s.auth(request.mechanism, request.user, request.password)
        )

    async def mail_from(self, request: MailFrom) -> SessionResult:
        """MAIL FROM, announcing the size of the test message built now."""
        self._message = build_message(self.context.settings, message_id=self.message_id)
        size = len(self._message)
        return await self._reply(lambda s: s.mail(request.sender, size=size))

    async def rcpt_to(self, recipients: Sequence[str]) -> RcptResult:
        """RCPT TO for each recipient, stopping when the server says 421 (it is closing)."""
        start = self.context.clock()
        replies: list[tuple[str, SmtpReply]] = []
        failure: Failure | None = None
        for address in recipients:
            reply, failure = await self._guard(_rcpt(address))
            if reply is None:
                break
            replies.append((address, reply))
            if reply.is_positive:
                self.accepted.append(address)
            else:
                self.rejected[address] = reply
            if reply.code == 421:
                break
        return RcptResult(
            replies=tuple(replies),
            failure=failure,
            transcript=self._take(),
            duration=self.context.clock() - start,
        )

    async def send_data(self) -> SessionResult:
        """DATA and the test message built at MAIL time."""
        message = self._message or build_message(self.context.settings, message_id=self.message_id)
        result = await self._reply(lambda s: s.data(message))
        self.data_reply = result.reply
        return result

    async def end(self, *, polite: bool) -> Ack:
        """QUIT (when polite) and close the session; idempotent."""
        session = self.session
        if session is None:
            return Ack()
        start = self.context.clock()
        if polite:
            await session.quit()
        await session.close()
        transcript = self._take()
        self.last_session, self.session = session, None
        return Ack(transcript=transcript, duration=self.context.clock() - start)

    def handoff(self) -> SendResult:
        """The conversation as a completed send, for the target to follow the message."""
        settings = self.context.settings
        session = self.session or self.last_session
        reply = self.data_reply
        return SendResult(
            outcome=Outcome.DELIVERED,
            stage=Stage.DATA,
            code=reply.code if reply else None,
            enhanced=reply.enhanced if reply else None,
            text=reply.text if reply else "",
            transcript=session.transcript if session else Transcript(),
            timings=dict(session.timings) if session else {},
            message_id=self.message_id,
            server_address=self.address,
            port=settings.port,
            server=settings.server,
            accepted_recipients=list(self.accepted),
            rejected_recipients=dict(self.rejected),
            extensions=dict(session.extensions) if session else {},
            tls=session.tls if session else None,
            authenticated=session.authenticated if session else False,
        )

    # -- helpers ------------------------------------------------------------------------------

    def _take(self) -> tuple[TranscriptLine, ...]:
        """Transcript lines of the session since the last request."""
        session = self.session or self.last_session
        if session is None:
            return ()
        lines = session.transcript.lines[self._mark :]
        self._mark = len(session.transcript.lines)
        return tuple(lines)

    async def _guard(
        self, action: Callable[[SmtpSession], Awaitable[_T]]
    ) -> tuple[_T | None, Failure | None]:
        session = self.session
        if session is None:
            return None, Failure("closed", "the session is not open")
        try:
            return await action(session), None
        except EXPECTED as error:
            return None, failure_of(error)

    async def _reply(self, action: Callable[[SmtpSession], Awaitable[SmtpReply]]) -> SessionResult:
        start = self.context.clock()
        reply, failure = await self._guard(action)
        return SessionResult(
            reply=reply,
            failure=failure,
            transcript=self._take(),
            duration=self.context.clock() - start,
        )


async def _hello(session: SmtpSession, name: str) -> HelloResult:
    """EHLO, and HELO when EHLO is refused permanently; both replies are kept."""
    with session.measure(Stage.EHLO):
        first = await session.command(f"EHLO {name}", Stage.EHLO)
    if first.is_positive:
        session.esmtp = True
        session.extensions = parse_extensions(first)
        return HelloResult(reply=first, ehlo_reply=first, extensions=dict(session.extensions))
    if not first.is_permanent:
        return HelloResult(reply=first, ehlo_reply=first)
    session.note("EHLO refused: falling back to HELO (no ESMTP extensions)")
    reply = await session.helo(name)
    return HelloResult(reply=reply, ehlo_reply=first, helo_fallback=reply.is_positive)


def _rcpt(address: str) -> Callable[[SmtpSession], Awaitable[SmtpReply]]:
    """RCPT TO for one address, as a session action (bound now, not at call time)."""

    def action(session: SmtpSession) -> Awaitable[SmtpReply]:
        return session.rcpt(address)

    return action
