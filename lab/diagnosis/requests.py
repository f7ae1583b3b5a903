"""The contract between the planner and the probe runners: requests and their results.

Plain frozen data, no I/O and no decisions: the planner (`lab.diagnosis.planner`) yields a
request, a runner (`lab.diagnosis.probes`) carries it out and answers with a result. Tests
of the planner build results by hand; tests of the runners inspect them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.smtp.reply import SmtpReply
from lab.smtp.tls import TlsInfo
from lab.smtp.transcript import TranscriptLine

# --- requests: what the planner asks the runners to do ------------------------------------------


@dataclass(frozen=True)
class LookupDns:
    """The server's address (and its PTR), and the MX of the sender's and recipients' domains."""

    server: str
    recipient_domains: tuple[str, ...]
    sender_domain: str


@dataclass(frozen=True)
class ScanPorts:
    """Connect to every port at once; greet on the open alternatives (465: TLS first)."""

    address: str
    configured: int
    ports: tuple[int, ...]
    timeout: float


@dataclass(frozen=True)
class OpenSession:
    """Open the main session as the mail program does (implicit TLS when configured).

    `verify` off: the walk goes on past an untrusted certificate, which is already a finding.
    """

    address: str
    port: int
    implicit_tls: bool
    verify: bool = True


@dataclass(frozen=True)
class ReadBanner:
    """Wait for the greeting on the main session."""


@dataclass(frozen=True)
class SayHello:
    """EHLO; HELO when EHLO is refused (both are recorded)."""

    name: str


@dataclass(frozen=True)
class StartTls:
    """STARTTLS, the handshake with the mail program's verification, then EHLO again."""

    helo: str
    verify: bool = True


@dataclass(frozen=True)
class Authenticate:
    """AUTH with one mechanism."""

    mechanism: str
    user: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class MailFrom:
    """MAIL FROM (with SIZE= when offered)."""

    sender: str


@dataclass(frozen=True)
class RcptTo:
    """RCPT TO for each recipient."""

    recipients: tuple[str, ...]


@dataclass(frozen=True)
class SendData:
    """DATA and the test message."""


@dataclass(frozen=True)
class EndSession:
    """Close the main session; QUIT first when the conversation is still sound."""

    polite: bool


@dataclass(frozen=True)
class TryOtherTlsMode:
    """A fresh connection in the other TLS mode: is the port implicit TLS after all, or plain?"""

    address: str
    port: int
    implicit: bool
    helo: str


@dataclass(frozen=True)
class InspectTls:
    """A fresh handshake that accepts anything (old versions too): the certificate as sent."""

    address: str
    port: int
    implicit: bool
    helo: str


@dataclass(frozen=True)
class PeekAfterStarttls:
    """A fresh connection: STARTTLS (unverified) and EHLO, to see what is offered after TLS."""

    address: str
    port: int
    helo: str


@dataclass(frozen=True)
class FollowMessage:
    """Follow the accepted message: queue, delivery attempts, bounce (lab targets)."""


@dataclass(frozen=True)
class AuditRelay:
    """From a host outside the customer's networks, without a login: EHLO, MAIL, RCPT to a
    foreign domain, then RSET and QUIT. Never DATA: nothing is sent anywhere."""

    address: str
    port: int
    helo: str
    sender: str
    recipient: str


@dataclass(frozen=True)
class AskRecipientServer:
    """Ask the server that refused a recipient about it, from a host outside the customer's
    networks: VRFY, then MAIL FROM:<> and RCPT TO, then RSET (never DATA)."""

    address: str
    port: int
    helo: str
    recipient: str


@dataclass(frozen=True)
class CheckReverseDns:
    """The PTR of an address a server refused, and whether that name points back (FCrDNS)."""

    address: str


Request = (
    LookupDns
    | ScanPorts
    | OpenSession
    | ReadBanner
    | SayHello
    | StartTls
    | Authenticate
    | MailFrom
    | RcptTo
    | SendData
    | EndSession
    | TryOtherTlsMode
    | InspectTls
    | PeekAfterStarttls
    | FollowMessage
    | AuditRelay
    | AskRecipientServer
    | CheckReverseDns
)


# --- results: what the runners saw ---------------------------------------------------------------

Lines = tuple[TranscriptLine, ...]


@dataclass(frozen=True)
class Failure:
    """Why a connection or a session could not go on.

    `kind`: "timeout" (no answer in time), "closed" (the server hung up), "tls"
    (handshake or certificate), "malformed" (not SMTP), "refused", "unreachable",
    "connect-timeout", "error".
    """

    kind: str
    detail: str


@dataclass(frozen=True)
class NameLookup:
    """The server name's A lookup. `status`: ok, literal, nxdomain, nodata, temporary."""

    name: str
    status: str
    addresses: tuple[str, ...] = ()
    error: str | None = None
    ms: float = 0.0


@dataclass(frozen=True)
class DomainLookup:
    """Where mail for a domain goes.

    `status`: ok (MX records), no-mx (none: the A record is used, RFC 5321 §5.1),
    null-mx (`MX 0 .`, RFC 7505), nxdomain, temporary, no-host (no MX and no A).
    """

    domain: str
    status: str
    mx: tuple[str, ...] = ()
    a_fallback: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class DnsResult:
    """Result of `LookupDns`."""

    server: NameLookup
    ptr: str | None = None
    recipients: tuple[DomainLookup, ...] = ()
    sender: DomainLookup | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class Greeting:
    """What an open alternative port said: mode "plain" or "tls", banner, EHLO offers."""

    mode: str
    code: int | None = None
    text: str = ""
    starttls: bool = False
    auth: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class PortProbe:
    """One port: `state` open, timeout, refused, unreachable or error; connect time in ms."""

    port: int
    state: str
    ms: float
    detail: str = ""
    greeting: Greeting | None = None


@dataclass(frozen=True)
class PortsResult:
    """Result of `ScanPorts`."""

    address: str
    ports: tuple[PortProbe, ...]
    timeout: float
    duration: float = 0.0


@dataclass(frozen=True)
class SessionResult:
    """One reply of the main session (or why there was none); `tls` after an implicit handshake."""

    reply: SmtpReply | None = None
    failure: Failure | None = None
    tls: TlsInfo | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class HelloResult:
    """Result of `SayHello`: the final reply, the EHLO reply, and the extensions."""

    reply: SmtpReply | None = None
    ehlo_reply: SmtpReply | None = None
    helo_fallback: bool = False
    extensions: Mapping[str, str] = field(default_factory=dict)
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class StartTlsResult:
    """Result of `StartTls`: the reply to STARTTLS, what was negotiated, the EHLO after it."""

    reply: SmtpReply | None = None
    tls: TlsInfo | None = None
    hello: HelloResult | None = None
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class RcptResult:
    """Result of `RcptTo`: each recipient's reply, in order."""

    replies: tuple[tuple[str, SmtpReply], ...] = ()
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class ModeResult:
    """Result of `TryOtherTlsMode`."""

    implicit: bool
    banner: SmtpReply | None = None
    tls: TlsInfo | None = None
    starttls: bool = False
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class InspectResult:
    """Result of `InspectTls`: the certificate and version, whatever their faults."""

    tls: TlsInfo | None = None
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class PeekResult:
    """Result of `PeekAfterStarttls`: the extensions offered once encrypted."""

    extensions: Mapping[str, str] | None = None
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class Deferral:
    """A temporary failure the relay met on the way, and will retry."""

    recipient: str
    status: str | None
    reason: str
    attempt: int = 0


@dataclass(frozen=True)
class RecipientOutcome:
    """Where one recipient's copy ended: delivered, bounced or pending."""

    address: str
    fate: str
    node: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    reply_code: int | None = None
    remote_mta: str | None = None
    reporting_mta: str | None = None  # the server that wrote the bounce


@dataclass(frozen=True)
class RouteTaken:
    """One relay's next-hop decision for a recipient domain, and where it then tried.

    `method` is the relay's `RouteMethod` (connector, smarthost, mx, implicit-mx);
    `tried` holds "host[address]:port" for each delivery attempt, in order.
    """

    node: str | None
    domain: str
    method: str
    pattern: str | None = None
    hops: tuple[str, ...] = ()
    failure: str | None = None
    tried: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeliveryResult:
    """Result of `FollowMessage`. `state`: delivered, bounced, deferred or unknown."""

    state: str
    recipients: tuple[RecipientOutcome, ...] = ()
    deferrals: tuple[Deferral, ...] = ()
    attempts: int = 0
    expired: bool = False
    route_failure: str | None = None
    text: str = ""
    remote_address: str | None = None
    handed_over: tuple[str, ...] = ()  # recipients a relay handed on with a 250
    remote_size_limit: int | None = None  # the SIZE the next server announced to the relay
    transcript: Lines = ()
    duration: float = 0.0
    # Hosts a server could not reach and went past to its next host at once (bridgeheads,
    # MX hosts): "connect to relay-a...: Connection timed out".
    failovers: tuple[str, ...] = ()
    queued_on: int = 0  # how many servers queued the message on its way
    routes: tuple[RouteTaken, ...] = ()  # oldest first: the relays the message went through


@dataclass(frozen=True)
class AuditResult:
    """Result of `AuditRelay`: who tried, and the replies to MAIL and RCPT (None: not reached)."""

    source: str
    mail: SmtpReply | None = None
    rcpt: SmtpReply | None = None
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class RecipientAnswers:
    """Result of `AskRecipientServer`: the replies to VRFY and RCPT (None: not reached)."""

    source: str
    vrfy: SmtpReply | None = None
    rcpt: SmtpReply | None = None
    failure: Failure | None = None
    transcript: Lines = ()
    duration: float = 0.0


@dataclass(frozen=True)
class ReverseResult:
    """Result of `CheckReverseDns`: the PTR name (None: none) and that name's addresses."""

    address: str
    ptr: str | None = None
    forward: tuple[str, ...] = ()
    error: str | None = None
    duration: float = 0.0


@dataclass(frozen=True)
class Ack:
    """Result of `EndSession`."""

    transcript: Lines = ()
    duration: float = 0.0


Result = (
    DnsResult
    | PortsResult
    | SessionResult
    | HelloResult
    | StartTlsResult
    | RcptResult
    | ModeResult
    | InspectResult
    | PeekResult
    | DeliveryResult
    | AuditResult
    | RecipientAnswers
    | ReverseResult
    | Ack
)
