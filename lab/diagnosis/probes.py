"""Probe runners: the thin I/O loop around the planner's requests.

`ProbeRunner.run(request)` carries out one request of `lab.diagnosis.planner`
and returns what it saw as a plain result; it decides nothing. It owns the
sockets: the main SMTP session (which behaves exactly like the customer's mail
program, with its TLS verification and its login) and the short side
connections the planner asks for (the port sweep, the other TLS mode, an
unverified look at the certificate, a peek behind STARTTLS).

The port sweep connects to every port at once (`asyncio.gather`), each bounded
by the mail program's timeout, so a whole diagnosis costs about one connect
timeout plus the conversation itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import dns.exception
import dns.reversename

from lab.diagnosis.planner import (
    IMPLICIT_TLS_PORTS,
    is_ip_literal,
)
from lab.diagnosis.requests import (
    Ack,
    Authenticate,
    CheckReverseDns,
    Deferral,
    DeliveryResult,
    DnsResult,
    DomainLookup,
    EndSession,
    Failure,
    FollowMessage,
    Greeting,
    HelloResult,
    InspectResult,
    InspectTls,
    LookupDns,
    MailFrom,
    ModeResult,
    NameLookup,
    OpenSession,
    PeekAfterStarttls,
    PeekResult,
    PortProbe,
    PortsResult,
    RcptResult,
    RcptTo,
    ReadBanner,
    RecipientOutcome,
    Request,
    Result,
    ReverseResult,
    SayHello,
    ScanPorts,
    SendData,
    SessionResult,
    StartTls,
    StartTlsResult,
    TryOtherTlsMode,
)
from lab.net import ConnectError, ConnectRefused, ConnectTimeout, HostUnreachable, Streams
from lab.nodes.resolver import DnsLookupError, NameNotFound, NoRecords
from lab.scenario.model import Outcome, Stage
from lab.smtp.client import (
    ConnectionLost,
    ProtocolError,
    SendResult,
    SmtpClientError,
    SmtpReply,
    SmtpSession,
    SmtpTimeout,
    TlsError,
    client_tls_context,
    parse_extensions,
)
from lab.smtp.message import build_message, new_message_id
from lab.smtp.transcript import Direction, Transcript, TranscriptLine

if TYPE_CHECKING:
    from lab.diagnosis.target import DiagnosisTarget
    from lab.runs import RunReport
    from lab.scenario.model import MailSettings

_T = TypeVar("_T")
# A side look (the other TLS mode, the certificate, behind STARTTLS) needs a handshake and a
# greeting, which take milliseconds when they work: bounding it keeps a diagnosis within one
# connect timeout plus about a second even when the side look meets a silent server.
SIDE_TIMEOUT = 1.5
# The sweep's greeting on an alternative port never needs long: the banner and EHLO of
# a healthy server take milliseconds, and a silent one is not a good alternative anyway.
MIN_GREETING_BUDGET = 0.25


def insecure_context() -> ssl.SSLContext:
    """TLS that accepts any certificate: for looking, never for sending mail."""
    return client_tls_context(verify=False)


def permissive_context() -> ssl.SSLContext:
    """Like `insecure_context`, and also accepts TLS 1.0/1.1 and weak ciphers.

    Only used to learn what an outdated server speaks after the mail program's
    own (strict) handshake failed.
    """
    context = insecure_context()
    with warnings.catch_warnings():
        # TLSVersion.TLSv1 is deprecated; using it here is the point (detecting old servers).
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


def failure_of(error: BaseException) -> Failure:
    """The planner's view of a client or connect error."""
    if isinstance(error, SmtpTimeout):
        return Failure("timeout", str(error))
    if isinstance(error, ConnectionLost):
        return Failure("closed", str(error))
    if isinstance(error, TlsError):
        return Failure("tls", error.reason)
    if isinstance(error, ProtocolError):
        line = getattr(error, "line", "")
        return Failure("malformed", f"{error}" + (f" ({line[:60]!r})" if line else ""))
    if isinstance(error, ConnectTimeout):
        return Failure("connect-timeout", str(error))
    if isinstance(error, ConnectRefused):
        return Failure("refused", str(error))
    if isinstance(error, HostUnreachable):
        return Failure("unreachable", str(error))
    return Failure("error", str(error) or type(error).__name__)


_EXPECTED = (SmtpClientError, ConnectError, OSError, ValueError)


class _Opened:
    """A connector that hands out streams opened earlier (the sweep greets on them)."""

    def __init__(self, streams: Streams) -> None:
        self._streams: Streams | None = streams

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        if self._streams is None:
            raise ConnectRefused(111, "already used")
        streams, self._streams = self._streams, None
        return streams


async def _close_streams(streams: Streams) -> None:
    _, writer = streams
    writer.close()
    with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


class ProbeRunner:
    """Carries out the planner's requests against a `DiagnosisTarget`.

    Args:
        target: the world being diagnosed.
        settings: the mail program's settings (timeouts, TLS verification, the message).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        target: DiagnosisTarget,
        settings: MailSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.target = target
        self.settings = settings
        self.clock = clock
        self.helo = settings.helo or target.helo
        self.message_id = new_message_id(self.helo)
        self.session: SmtpSession | None = None
        self.last_session: SmtpSession | None = None
        self.address: str | None = None
        self.accepted: list[str] = []
        self.rejected: dict[str, SmtpReply] = {}
        self.data_reply: SmtpReply | None = None
        self._message: bytes | None = None
        self._mark = 0

    @property
    def server_name(self) -> str:
        """The name TLS checks the certificate against (the configured server)."""
        return self.settings.server.strip("[]")

    # -- dispatch -----------------------------------------------------------------------------

    async def run(self, request: Request) -> Result:
        """Carry out one request."""
        match request:
            case LookupDns():
                return await self.lookup_dns(request)
            case ScanPorts():
                return await self.scan_ports(request)
            case OpenSession():
                return await self.open_session(request)
            case ReadBanner():
                return await self._reply(lambda s: s.read_banner())
            case SayHello():
                return await self.say_hello(request.name)
            case StartTls():
                return await self.start_tls(request)
            case Authenticate():
                return await self._reply(
                    lambda s: s.auth(request.mechanism, request.user, request.password)
                )
            case MailFrom():
                self._message = build_message(self.settings, message_id=self.message_id)
                size = len(self._message)
                return await self._reply(lambda s: s.mail(request.sender, size=size))
            case RcptTo():
                return await self.rcpt_to(request.recipients)
            case SendData():
                return await self.send_data()
            case EndSession():
                return await self.end_session(polite=request.polite)
            case TryOtherTlsMode():
                return await self.try_other_mode(request)
            case InspectTls():
                return await self.inspect_tls(request)
            case PeekAfterStarttls():
                return await self.peek_after_starttls(request)
            case FollowMessage():
                return await self.follow()
            case CheckReverseDns():
                return await self.check_reverse_dns(request.address)
        raise TypeError(f"unknown request {request!r}")  # pragma: no cover

    async def close(self) -> None:
        """Close whatever is still open; idempotent."""
        await self.end_session(polite=False)

    # -- DNS ----------------------------------------------------------------------------------

    async def lookup_dns(self, request: LookupDns) -> DnsResult:
        """The server's A record and the domains' MX, in parallel; then the server's PTR."""
        start = self.clock()
        domains = [
            d for d in dict.fromkeys((*request.recipient_domains, request.sender_domain)) if d
        ]
        server, *lookups = await asyncio.gather(
            self._lookup_name(request.server), *(self._lookup_domain(d) for d in domains)
        )
        assert isinstance(server, NameLookup)
        by_domain = {
            lookup.domain: lookup for lookup in lookups if isinstance(lookup, DomainLookup)
        }
        ptr = await self._reverse(server.addresses[0]) if server.addresses else None
        return DnsResult(
            server=server,
            ptr=ptr,
            recipients=tuple(by_domain[d] for d in request.recipient_domains if d in by_domain),
            sender=by_domain.get(request.sender_domain),
            duration=self.clock() - start,
        )

    async def _lookup_name(self, name: str) -> NameLookup:
        if is_ip_literal(name):
            return NameLookup(name, "literal", (name.strip("[]"),))
        start = self.clock()

        def took() -> float:
            return round((self.clock() - start) * 1000, 1)

        try:
            addresses = await self.target.resolve(name, "A")
        except NameNotFound as error:
            return NameLookup(name, "nxdomain", error=str(error), ms=took())
        except NoRecords as error:
            return NameLookup(name, "nodata", error=str(error), ms=took())
        except DnsLookupError as error:
            status = "nxdomain" if error.permanent else "temporary"
            return NameLookup(name, status, error=str(error), ms=took())
        except Exception as error:  # any resolver trouble is a failed lookup, not a crash
            return NameLookup(
                name, "temporary", error=str(error) or type(error).__name__, ms=took()
            )
        if not addresses:
            return NameLookup(name, "nodata", error=f"{name} has no address", ms=took())
        return NameLookup(name, "ok", tuple(addresses), ms=took())

    async def _lookup_domain(self, domain: str) -> DomainLookup:
        if is_ip_literal(domain):
            return DomainLookup(domain, "ok", (domain.strip("[]"),))
        try:
            records = await self.target.resolve(domain, "MX")
        except NameNotFound as error:
            return DomainLookup(domain, "nxdomain", error=str(error))
        except NoRecords:
            records = [f"0 {domain}"]  # no MX: the domain is its own exchanger (RFC 5321 §5.1)
        except DnsLookupError as error:
            return DomainLookup(
                domain, "nxdomain" if error.permanent else "temporary", error=str(error)
            )
        except Exception as error:  # as above: a failed lookup, not a crash
            return DomainLookup(domain, "temporary", error=str(error) or type(error).__name__)
        if not records:
            return DomainLookup(domain, "null-mx")
        hosts = tuple(record.split()[-1].rstrip(".").lower() for record in records)
        if hosts != (domain.lower().rstrip("."),):
            return DomainLookup(domain, "ok", hosts)
        try:
            addresses = await self.target.resolve(domain, "A")
        except (NameNotFound, NoRecords):
            return DomainLookup(domain, "no-host")
        except Exception as error:  # the A fallback could not be checked
            return DomainLookup(domain, "no-mx", error=str(error) or type(error).__name__)
        return DomainLookup(domain, "no-mx", a_fallback=tuple(addresses))

    async def _reverse(self, address: str) -> str | None:
        try:
            name = dns.reversename.from_address(address).to_text()
        except (dns.exception.DNSException, ValueError):
            return None
        try:
            records = await asyncio.wait_for(
                self.target.resolve(name, "PTR"), max(self.settings.timeout, 1.0)
            )
        except Exception:  # no PTR, or no answer: either way there is no name to compare
            return None
        return records[0].rstrip(".").lower() if records else None

    async def check_reverse_dns(self, address: str) -> ReverseResult:
        """PTR of `address`, then the A records of that name (forward-confirmed reverse DNS)."""
        start = self.clock()
        ptr = await self._reverse(address)
        if ptr is None:
            return ReverseResult(address, duration=self.clock() - start)
        try:
            forward = tuple(await self.target.resolve(ptr, "A"))
        except Exception as error:  # the name has no address: not confirmed
            return ReverseResult(
                address, ptr, error=str(error) or None, duration=self.clock() - start
            )
        return ReverseResult(address, ptr, forward, duration=self.clock() - start)

    # -- the port sweep -----------------------------------------------------------------------

    async def scan_ports(self, request: ScanPorts) -> PortsResult:
        """Every port at once; greet on open alternatives within the same timeout."""
        start = self.clock()
        probes = await asyncio.gather(*(self._probe_port(request, port) for port in request.ports))
        return PortsResult(
            address=request.address,
            ports=tuple(probes),
            timeout=request.timeout,
            duration=self.clock() - start,
        )

    async def _probe_port(self, request: ScanPorts, port: int) -> PortProbe:
        start = self.clock()
        try:
            streams = await self.target.connector.open_connection(
                request.address, port, timeout=request.timeout
            )
        except (ConnectTimeout, TimeoutError) as error:
            return PortProbe(port, "timeout", self._ms(start), str(error))
        except ConnectRefused as error:
            return PortProbe(port, "refused", self._ms(start), str(error))
        except HostUnreachable as error:
            return PortProbe(port, "unreachable", self._ms(start), str(error))
        except ConnectionRefusedError as error:
            return PortProbe(port, "refused", self._ms(start), str(error))
        except OSError as error:
            return PortProbe(port, "error", self._ms(start), error.strerror or str(error))
        ms = self._ms(start)
        if port == request.configured:
            # The main session connects on its own: this one only proves the port is open.
            await _close_streams(streams)
            return PortProbe(port, "open", ms)
        budget = max(request.timeout - (self.clock() - start), MIN_GREETING_BUDGET)
        greeting = await self._greet(streams, request.address, port, budget)
        return PortProbe(port, "open", ms, greeting=greeting)

    async def _greet(self, streams: Streams, address: str, port: int, budget: float) -> Greeting:
        """What an alternative port offers: banner (after TLS on 465), STARTTLS, AUTH."""
        mode = "tls" if port in IMPLICIT_TLS_PORTS else "plain"
        session = SmtpSession(_Opened(streams), budget)
        try:
            async with asyncio.timeout(budget):
                await session.connect(
                    address,
                    port,
                    implicit_tls=mode == "tls",
                    ssl_context=insecure_context(),
                    server_hostname=self.server_name,
                )
                banner = await session.read_banner()
                if banner.code != 220:
                    return Greeting(mode, banner.code, str(banner))
                reply = await session.ehlo(self.helo)
                starttls = reply.is_positive and session.supports("STARTTLS")
                auth = tuple(session.auth_mechanisms)
                await session.quit()
                return Greeting(mode, 220, str(banner), starttls, auth)
        except TimeoutError:
            return Greeting(mode, error=f"no greeting within {budget:.1f} s")
        except _EXPECTED as error:
            return Greeting(mode, error=failure_of(error).detail)
        finally:
            await session.close()

    # -- the main session ---------------------------------------------------------------------

    def _take(self) -> tuple[TranscriptLine, ...]:
        """Transcript lines of the main session since the last request."""
        session = self.session or self.last_session
        if session is None:
            return ()
        lines = session.transcript.lines[self._mark :]
        self._mark = len(session.transcript.lines)
        return tuple(lines)

    def _ms(self, start: float) -> float:
        return round((self.clock() - start) * 1000, 1)

    def _verify_context(self) -> ssl.SSLContext:
        """The mail program's own TLS: verification as configured, the target's CA."""
        return client_tls_context(verify=self.settings.verify_tls, ca_file=self.target.ca_file)

    async def open_session(self, request: OpenSession) -> SessionResult:
        """Connect as the mail program does (with its verified handshake for implicit TLS)."""
        start = self.clock()
        await self.end_session(polite=False)
        session = SmtpSession(self.target.connector, self.settings.timeout, clock=self.clock)
        if self.settings.auth is not None:
            session.add_secret(self.settings.auth.password)
        self.session, self._mark, self.address = session, 0, request.address
        context = None
        if request.implicit_tls:
            try:
                context = self._verify_context()
            except (OSError, ssl.SSLError) as error:
                detail = f"cannot load trusted certificates from {self.target.ca_file}: {error}"
                session.note(detail)
                return SessionResult(
                    failure=Failure("tls", detail),
                    transcript=self._take(),
                    duration=self.clock() - start,
                )
        try:
            await session.connect(
                request.address,
                request.port,
                implicit_tls=request.implicit_tls,
                ssl_context=context,
                server_hostname=self.server_name if request.implicit_tls else None,
            )
        except _EXPECTED as error:
            return SessionResult(
                failure=failure_of(error), transcript=self._take(), duration=self.clock() - start
            )
        return SessionResult(
            tls=session.tls, transcript=self._take(), duration=self.clock() - start
        )

    async def _guard(
        self, action: Callable[[SmtpSession], Awaitable[_T]]
    ) -> tuple[_T | None, Failure | None]:
        session = self.session
        if session is None:
            return None, Failure("closed", "the session is not open")
        try:
            return await action(session), None
        except _EXPECTED as error:
            return None, failure_of(error)

    async def _reply(self, action: Callable[[SmtpSession], Awaitable[SmtpReply]]) -> SessionResult:
        start = self.clock()
        reply, failure = await self._guard(action)
        return SessionResult(
            reply=reply, failure=failure, transcript=self._take(), duration=self.clock() - start
        )

    async def _hello(self, session: SmtpSession, name: str) -> HelloResult:
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

    async def say_hello(self, name: str) -> HelloResult:
        """EHLO (HELO fallback) on the main session."""
        start = self.clock()
        session = self.session
        if session is None:
            return HelloResult(failure=Failure("closed", "the session is not open"))
        try:
            hello = await self._hello(session, name)
        except _EXPECTED as error:
            hello = HelloResult(failure=failure_of(error))
        return HelloResult(
            reply=hello.reply,
            ehlo_reply=hello.ehlo_reply,
            helo_fallback=hello.helo_fallback,
            extensions=hello.extensions,
            failure=hello.failure,
            transcript=self._take(),
            duration=self.clock() - start,
        )

    async def start_tls(self, request: StartTls) -> StartTlsResult:
        """STARTTLS with the mail program's verification, then EHLO again."""
        start = self.clock()
        session = self.session
        if session is None:
            return StartTlsResult(failure=Failure("closed", "the session is not open"))
        try:
            context = self._verify_context()
        except (OSError, ssl.SSLError) as error:
            detail = f"cannot load trusted certificates from {self.target.ca_file}: {error}"
            return StartTlsResult(failure=Failure("tls", detail), transcript=self._take())
        try:
            reply = await session.starttls(context, self.server_name)
            if reply.code != 220:
                return StartTlsResult(
                    reply=reply, transcript=self._take(), duration=self.clock() - start
                )
            try:
                hello = await self._hello(session, request.helo)
            except _EXPECTED as error:
                hello = HelloResult(failure=failure_of(error))
        except _EXPECTED as error:
            return StartTlsResult(
                failure=failure_of(error), transcript=self._take(), duration=self.clock() - start
            )
        return StartTlsResult(
            reply=reply,
            tls=session.tls,
            hello=hello,
            transcript=self._take(),
            duration=self.clock() - start,
        )

    async def rcpt_to(self, recipients: Sequence[str]) -> RcptResult:
        """RCPT TO for each recipient, stopping when the server says 421 (it is closing)."""
        start = self.clock()
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
            duration=self.clock() - start,
        )

    async def send_data(self) -> SessionResult:
        """DATA and the test message built at MAIL time."""
        message = self._message or build_message(self.settings, message_id=self.message_id)
        result = await self._reply(lambda s: s.data(message))
        self.data_reply = result.reply
        return result

    async def end_session(self, *, polite: bool) -> Ack:
        """QUIT (when polite) and close the main session."""
        session = self.session
        if session is None:
            return Ack()
        start = self.clock()
        if polite:
            await session.quit()
        await session.close()
        transcript = self._take()
        self.last_session, self.session = session, None
        return Ack(transcript=transcript, duration=self.clock() - start)

    # -- side connections ---------------------------------------------------------------------

    def _side_session(self, note: str) -> SmtpSession:
        timeout = min(self.settings.timeout, SIDE_TIMEOUT)
        session = SmtpSession(self.target.connector, timeout, clock=self.clock)
        session.note(note)
        return session

    async def try_other_mode(self, request: TryOtherTlsMode) -> ModeResult:
        """A new connection in the other TLS mode: does the port greet that way?"""
        start = self.clock()
        mode = "implicit TLS" if request.implicit else "plain text"
        session = self._side_session(f"new connection to port {request.port} in {mode}")
        try:
            await session.connect(
                request.address,
                request.port,
                implicit_tls=request.implicit,
                ssl_context=insecure_context() if request.implicit else None,
                server_hostname=self.server_name if request.implicit else None,
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
                duration=self.clock() - start,
            )
        except _EXPECTED as error:
            return ModeResult(
                request.implicit,
                failure=failure_of(error),
                transcript=tuple(session.transcript.lines),
                duration=self.clock() - start,
            )
        finally:
            await session.close()

    async def inspect_tls(self, request: InspectTls) -> InspectResult:
        """A handshake that accepts anything, to see the certificate and the version."""
        start = self.clock()
        session = self._side_session(
            f"new connection to port {request.port}: TLS without verification, old versions allowed"
        )
        context = permissive_context()
        try:
            if request.implicit:
                await session.connect(
                    request.address,
                    request.port,
                    implicit_tls=True,
                    ssl_context=context,
                    server_hostname=self.server_name,
                )
            else:
                await session.connect(request.address, request.port)
                await session.read_banner()
                await session.ehlo(request.helo)
                reply = await session.starttls(context, self.server_name)
                if reply.code != 220:
                    raise TlsError(Stage.STARTTLS, f"STARTTLS answered {reply}")
            return InspectResult(
                tls=session.tls,
                transcript=tuple(session.transcript.lines),
                duration=self.clock() - start,
            )
        except _EXPECTED as error:
            return InspectResult(
                failure=failure_of(error),
                transcript=tuple(session.transcript.lines),
                duration=self.clock() - start,
            )
        finally:
            await session.close()

    async def peek_after_starttls(self, request: PeekAfterStarttls) -> PeekResult:
        """What EHLO offers once encrypted (AUTH is often hidden until then)."""
        start = self.clock()
        session = self._side_session(
            f"new connection to port {request.port}: STARTTLS to see what is offered after it"
        )
        try:
            await session.connect(request.address, request.port)
            await session.read_banner()
            await session.ehlo(request.helo)
            if not session.supports("STARTTLS"):
                return PeekResult(
                    transcript=tuple(session.transcript.lines), duration=self.clock() - start
                )
            reply = await session.starttls(insecure_context(), self.server_name)
            extensions: dict[str, str] | None = None
            if reply.code == 220:
                hello = await session.ehlo(request.helo)
                extensions = dict(session.extensions) if hello.is_positive else None
                await session.quit()
            return PeekResult(
                extensions=extensions,
                transcript=tuple(session.transcript.lines),
                duration=self.clock() - start,
            )
        except _EXPECTED as error:
            return PeekResult(
                failure=failure_of(error),
                transcript=tuple(session.transcript.lines),
                duration=self.clock() - start,
            )
        finally:
            await session.close()

    # -- after the hand-off -------------------------------------------------------------------

    async def follow(self) -> DeliveryResult:
        """Ask the target what became of the accepted message."""
        start = self.clock()
        session = self.session or self.last_session
        reply = self.data_reply
        send = SendResult(
            outcome=Outcome.DELIVERED,
            stage=Stage.DATA,
            code=reply.code if reply else None,
            enhanced=reply.enhanced if reply else None,
            text=reply.text if reply else "",
            transcript=session.transcript if session else Transcript(),
            timings=dict(session.timings) if session else {},
            message_id=self.message_id,
            server_address=self.address,
            port=self.settings.port,
            server=self.settings.server,
            accepted_recipients=list(self.accepted),
            rejected_recipients=dict(self.rejected),
            extensions=dict(session.extensions) if session else {},
            tls=session.tls if session else None,
            authenticated=session.authenticated if session else False,
        )
        report = await self.target.follow(self.settings, send)
        events = self.target.delivery_events(self.message_id)
        return delivery_from(report, events, duration=self.clock() - start)


def _rcpt(address: str) -> Callable[[SmtpSession], Awaitable[SmtpReply]]:
    """RCPT TO for one address, as a session action (bound now, not at call time)."""

    def action(session: SmtpSession) -> Awaitable[SmtpReply]:
        return session.rcpt(address)

    return action


def delivery_from(
    report: RunReport | None, events: Sequence[dict[str, Any]], *, duration: float = 0.0
) -> DeliveryResult:
    """The planner's delivery result from a followed run and the relays' events."""
    if report is None:
        return DeliveryResult(
            "unknown", text="this target cannot follow messages", duration=duration
        )
    state = {
        Outcome.DELIVERED: "delivered",
        Outcome.BOUNCED: "bounced",
        Outcome.DEFERRED: "deferred",
    }.get(report.outcome, "unknown")
    recipients = tuple(
        RecipientOutcome(
            address=fate.address,
            fate=str(fate.fate),
            node=fate.node,
            status=fate.status,
            diagnostic=fate.diagnostic,
            reply_code=fate.reply_code,
            remote_mta=fate.remote_mta,
        )
        for fate in report.recipients
    )
    deferrals = tuple(
        Deferral(
            recipient=str(event.get("recipient") or ""),
            status=event.get("status"),
            reason=str(event.get("reason") or ""),
            attempt=int(event.get("attempt") or 0),
        )
        for event in events
        if event.get("event") == "deferred"
    )
    attempts = [event for event in events if event.get("event") == "delivery-attempt"]
    transcript: list[TranscriptLine] = []
    for number, attempt in enumerate(attempts, 1):
        where = f"{attempt.get('host')}[{attempt.get('address')}]:{attempt.get('port')}"
        transcript.append(TranscriptLine(0.0, Direction.NOTE, f"relay attempt {number} to {where}"))
        for line in attempt.get("transcript") or []:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                transcript.append(
                    TranscriptLine(float(line["at"]), Direction(line["dir"]), str(line["text"]))
                )
    route_failure = next(
        (str(e["failure"]) for e in events if e.get("event") == "route" and e.get("failure")),
        None,
    )
    return DeliveryResult(
        state=state,
        recipients=recipients,
        deferrals=deferrals,
        attempts=len(attempts),
        expired=any(event.get("event") == "expired" for event in events),
        route_failure=route_failure,
        text=report.text,
        remote_address=str(attempts[-1].get("address")) if attempts else None,
        transcript=tuple(transcript),
        duration=duration,
    )
