"""Side looks: short extra connections the planner asks for to explain a failure.

`try_other_mode` answers `TryOtherTlsMode` (does the port greet in the other TLS
mode?), `inspect_tls` answers `InspectTls` (the certificate and version, with a
handshake that accepts anything) and `peek_after_starttls` answers
`PeekAfterStarttls` (what EHLO offers once encrypted); `audit_relay` answers
`AuditRelay` (a relay attempt from the target's outside host); `ask_recipient_server`
answers `AskRecipientServer` (VRFY and RCPT at the server that refused a recipient,
from the same outside host). Each opens its
own connection, never the main session's, and is bounded by `SIDE_TIMEOUT`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lab.diagnosis.probes.context import ProbeContext, insecure_context, permissive_context
from lab.diagnosis.probes.failures import EXPECTED, failure_of
from lab.diagnosis.requests import (
    AskRecipientServer,
    AuditRelay,
    AuditResult,
    Failure,
    InspectResult,
    InspectTls,
    Lines,
    ModeResult,
    PeekAfterStarttls,
    PeekResult,
    RecipientAnswers,
    TryOtherTlsMode,
)
from lab.net import Connector
from lab.scenario.model import Stage
from lab.smtp.errors import TlsError
from lab.smtp.reply import SmtpReply
from lab.smtp.session import SmtpSession

# A side look (the other TLS mode, the certificate, behind STARTTLS) needs a handshake and a
# greeting, which take milliseconds when they work: bounding it keeps a diagnosis within one
# connect timeout plus about a second even when the side look meets a silent server.
SIDE_TIMEOUT = 1.5


async def try_other_mode(context: ProbeContext, request: TryOtherTlsMode) -> ModeResult:
    """A new connection in the other TLS mode: does the port greet that way?"""
    start = context.clock()
    mode = "implicit TLS" if request.implicit else "plain text"
    session = _side_session(context, f"new connection to port {request.port} in {mode}")
    try:
        await session.connect(
            request.address,
            request.port,
            implicit_tls=request.implicit,
            ssl_context=insecure_context() if request.implicit else None,
            server_hostname=context.server_name if request.implicit else None,
        )
        banner = await session.read_banner()
        starttls = False
        if banner.code == 220:
            reply = await session.ehlo(request.helo)
            starttls = reply.is_positive and session.supports("STARTTLS")
            await session.quit()
        return ModeResult(
            request.implicit,
            banner=banner,
            tls=session.tls,
            starttls=starttls,
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    except EXPECTED as error:
        return ModeResult(
            request.implicit,
            failure=failure_of(error),
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    finally:
        await session.close()


async def inspect_tls(context: ProbeContext, request: InspectTls) -> InspectResult:
    """A handshake that accepts anything, to see the certificate and the version."""
    start = context.clock()
    session = _side_session(
        context,
        f"new connection to port {request.port}: TLS without verification, old versions allowed",
    )
    tls = permissive_context()
    try:
        if request.implicit:
            await session.connect(
                request.address,
                request.port,
                implicit_tls=True,
                ssl_context=tls,
                server_hostname=context.server_name,
            )
        else:
            await session.connect(request.address, request.port)
            await session.read_banner()
            await session.ehlo(request.helo)
            reply = await session.starttls(tls, context.server_name)
            if reply.code != 220:
                raise TlsError(Stage.STARTTLS, f"STARTTLS answered {reply}")
        return InspectResult(
            tls=session.tls,
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    except EXPECTED as error:
        return InspectResult(
            failure=failure_of(error),
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    finally:
        await session.close()


async def peek_after_starttls(context: ProbeContext, request: PeekAfterStarttls) -> PeekResult:
    """What EHLO offers once encrypted (AUTH is often hidden until then)."""
    start = context.clock()
    session = _side_session(
        context, f"new connection to port {request.port}: STARTTLS to see what is offered after it"
    )
    try:
        await session.connect(request.address, request.port)
        await session.read_banner()
        await session.ehlo(request.helo)
        if not session.supports("STARTTLS"):
            return PeekResult(
                transcript=tuple(session.transcript.lines), duration=context.clock() - start
            )
        reply = await session.starttls(insecure_context(), context.server_name)
        extensions: dict[str, str] | None = None
        if reply.code == 220:
            hello = await session.ehlo(request.helo)
            extensions = dict(session.extensions) if hello.is_positive else None
            await session.quit()
        return PeekResult(
            extensions=extensions,
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    except EXPECTED as error:
        return PeekResult(
            failure=failure_of(error),
            transcript=tuple(session.transcript.lines),
            duration=context.clock() - start,
        )
    finally:
        await session.close()


async def audit_relay(context: ProbeContext, request: AuditRelay) -> AuditResult:
    """Try to relay from outside, without a login; RSET before DATA, so nothing is sent."""
    replies: dict[str, SmtpReply] = {}

    async def exchange(session: SmtpSession) -> SmtpReply:
        replies["mail"] = mail = await session.mail(request.sender)
        if mail.is_positive:
            replies["rcpt"] = await session.rcpt(request.recipient)
        return mail

    asked = await _ask_from_outside(
        context, f"to port {request.port}, no login", request.address, request.port,
        request.helo, exchange,
    )  # fmt: skip
    if asked is None:  # the planner asks only targets that have one
        return AuditResult("nowhere", failure=Failure("error", "no host outside to probe from"))
    source, failure, transcript, duration = asked
    return AuditResult(
        source,
        mail=replies.get("mail"),
        rcpt=replies.get("rcpt"),
        failure=failure,
        transcript=transcript,
        duration=duration,
    )


async def ask_recipient_server(
    context: ProbeContext, request: AskRecipientServer
) -> RecipientAnswers:
    """VRFY the recipient, then MAIL FROM:<> and RCPT TO it, then RSET: nothing is sent."""
    replies: dict[str, SmtpReply] = {}

    async def exchange(session: SmtpSession) -> SmtpReply:
        replies["vrfy"] = vrfy = await session.vrfy(request.recipient)
        if (await session.mail("")).is_positive:
            replies["rcpt"] = await session.rcpt(request.recipient)
        return vrfy

    asked = await _ask_from_outside(
        context, f"to port {request.port} of the recipient's server", request.address,
        request.port, request.helo, exchange,
    )  # fmt: skip
    if asked is None:  # the planner asks only targets that have one
        return RecipientAnswers("nowhere", failure=Failure("error", "no host outside"))
    source, failure, transcript, duration = asked
    return RecipientAnswers(
        source,
        vrfy=replies.get("vrfy"),
        rcpt=replies.get("rcpt"),
        failure=failure,
        transcript=transcript,
        duration=duration,
    )


async def _ask_from_outside(
    context: ProbeContext,
    where: str,
    address: str,
    port: int,
    helo: str,
    exchange: Callable[[SmtpSession], Awaitable[SmtpReply]],
) -> tuple[str, Failure | None, Lines, float] | None:
    """The frame the side conversations share: a session from the host outside, the
    greeting, `exchange` (its first reply proves the server talked), RSET and QUIT.
    Returns (source, failure, transcript, seconds); None where there is no host outside."""
    start = context.clock()
    outside = _outside_session(context, where)
    if outside is None:
        return None
    source, session = outside
    try:
        refused = await _greet(session, address, port, helo)
        answered = None
        if refused is None:
            answered = await exchange(session)
            await _leave(session)
        failure = None if answered else Failure("error", f"the server greeted with {refused}")
    except EXPECTED as error:
        failure = failure_of(error)
    finally:
        await session.close()
    return source, failure, tuple(session.transcript.lines), context.clock() - start


def _outside_session(context: ProbeContext, where: str) -> tuple[str, SmtpSession] | None:
    """A side session from the target's host outside the customer's networks, if it has one."""
    outsider = context.target.outsider()
    if outsider is None:
        return None
    source, connector = outsider
    return source, _side_session(context, f"new connection from {source} {where}", connector)


async def _greet(session: SmtpSession, address: str, port: int, helo: str) -> SmtpReply | None:
    """Connect and EHLO; None when the server took the EHLO, else its banner."""
    await session.connect(address, port)
    banner = await session.read_banner()
    if banner.code == 220 and (await session.ehlo(helo)).is_positive:
        return None
    return banner


async def _leave(session: SmtpSession) -> None:
    """RSET (nothing of the transaction is kept), then QUIT."""
    await session.rset()
    await session.quit()


def _side_session(
    context: ProbeContext, note: str, connector: Connector | None = None
) -> SmtpSession:
    timeout = min(context.settings.timeout, SIDE_TIMEOUT)
    session = SmtpSession(connector or context.target.connector, timeout, clock=context.clock)
    session.note(note)
    return session
