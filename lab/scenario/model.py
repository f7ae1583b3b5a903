"""The scenario schema: pydantic models that mirror a scenario YAML file.

Pure data. Defaults that depend on other parts of the file (addresses, PTR
records, compressed lab time) are applied later, by `lab.topology.resolve`.
This module imports neither docker nor aiosmtpd.
"""

from __future__ import annotations

from enum import StrEnum
from ipaddress import IPv4Network
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lab.units import Duration, Size

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
NodeName = Annotated[str, Field(pattern=NAME_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- closed vocabularies -------------------------------------------------------------


class PortPolicy(StrEnum):
    """What a router does with a new connection to a port."""

    ALLOW = "allow"
    DROP = "drop"  # silently discarded: the client waits out its connect timeout
    REJECT = "reject"  # answered with a reset: the client sees "connection refused"


class ListenerTls(StrEnum):
    """TLS on a server listener."""

    NONE = "none"
    STARTTLS = "starttls"  # plain connection, STARTTLS offered in EHLO
    IMPLICIT = "implicit"  # TLS from the first byte (port 465, "SMTPS")


class Security(StrEnum):
    """TLS as a mail program is configured to use it."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class AuthMechanism(StrEnum):
    """SASL mechanisms the lab's servers and client speak."""

    PLAIN = "PLAIN"
    LOGIN = "LOGIN"
    CRAM_MD5 = "CRAM-MD5"


class AuthPolicy(StrEnum):
    """Whether a listener offers or demands SMTP AUTH."""

    OFF = "off"
    OFFERED = "offered"
    REQUIRED = "required"


class CertificateFault(StrEnum):
    """Deliberately broken server certificates."""

    NONE = "none"
    EXPIRED = "expired"
    WRONG_NAME = "wrong-name"
    SELF_SIGNED = "self-signed"


class TlsVersions(StrEnum):
    """The TLS protocol versions a listener speaks."""

    MODERN = "modern"  # TLS 1.2 and 1.3
    # TLS 1.0 and 1.1 only, as servers not updated since the 2010s: every current client
    # (OpenSSL 3, Windows since 2020, Python >= 3.10) refuses to go below TLS 1.2.
    LEGACY = "legacy"


class SendAsPolicy(StrEnum):
    """Whether an authenticated user may use any envelope sender."""

    ANY = "any"
    # MAIL FROM must be the login name (or login@domain for a login without "@"):
    # Exchange Online's "550 5.7.60 ... send as this sender".
    ENFORCE = "enforce"


class DnsFault(StrEnum):
    """How the lab DNS misbehaves for a name or zone."""

    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"  # no answer at all


class MailboxState(StrEnum):
    """The state of a mailbox on a receiving server."""

    ACTIVE = "active"
    FULL = "full"  # temporary: 452 4.2.2
    OVER_QUOTA = "over-quota"  # permanent: 552 5.2.2
    DISABLED = "disabled"  # 550 5.2.1


class Outcome(StrEnum):
    """What finally happened to a message, as the sender experiences it."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"  # accepted, then returned to the sender with a DSN
    DEFERRED = "deferred"  # accepted and still queued when the run ended
    REJECTED = "rejected"  # a server answered a command with a 4xx/5xx reply
    CONNECT_TIMEOUT = "connect-timeout"
    CONNECT_REFUSED = "connect-refused"
    UNREACHABLE = "unreachable"  # no route to the host
    DNS_FAILURE = "dns-failure"  # the server name did not resolve
    NO_BANNER = "no-banner"  # TCP connected, no greeting before the timeout
    CONNECTION_LOST = "connection-lost"  # the server closed the connection
    TLS_FAILED = "tls-failed"  # handshake or certificate failure
    AUTH_UNAVAILABLE = "auth-unavailable"  # client cannot authenticate: AUTH not offered


class Stage(StrEnum):
    """The steps of a submission, in order, and what follows the hand-off."""

    DNS = "dns"
    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DELIVERY = "delivery"  # relay queue, onward hops, bounce


class Level(StrEnum):
    """How much a trainee must know to solve a case."""

    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


# --- networks ------------------------------------------------------------------------


class Network(StrictModel):
    """A layer-2 segment: the customer's LAN, the internet, a provider's LAN."""

    description: str = ""
    subnet: IPv4Network | None = Field(
        default=None,
        description="Pin a subnet; by default one is chosen that overlaps no host route.",
    )


# --- DNS -----------------------------------------------------------------------------


class DnsRecord(StrictModel):
    """One resource record; `node` stands for that node's address (A records only)."""

    name: str = "@"
    type: Literal["A", "AAAA", "MX", "TXT", "PTR", "CNAME"]
    value: str | None = None
    node: NodeName | None = None
    ttl: int = Field(default=300, ge=0)

    @model_validator(mode="after")
    def _value_or_node(self) -> DnsRecord:
        if (self.value is None) == (self.node is None):
            raise ValueError("give exactly one of 'value' or 'node'")
        if self.node is not None and self.type != "A":
            raise ValueError("'node' stands for an address: use it with type A only")
        return self


class Zone(StrictModel):
    """A DNS zone served by the lab DNS."""

    records: list[DnsRecord] = []
    fault: DnsFault | None = None


# A zone such as "zen.spamhaus.example": at least two labels.
DnsblZone = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?$", min_length=3, max_length=200)
]


class Inspection(StrictModel):
    """The router's SMTP inspection ("fixup protocol smtp" on a Cisco PIX, "inspect esmtp"
    on an ASA): a middlebox that rewrites the SMTP session passing through it."""

    ports: list[Port] = Field(default=[25], min_length=1)
    mangle_banner: bool = Field(
        default=True, description="The 220 greeting's text is replaced by asterisks."
    )
    strip_starttls: bool = Field(
        default=True,
        description="STARTTLS is masked out of EHLO replies (250-XXXXXXXA) and a client's "
        "STARTTLS command reaches the server as XXXXXXXX.",
    )


# --- nodes ---------------------------------------------------------------------------


class NodeBase(StrictModel):
    """Fields every node kind shares."""

    description: str = ""


class RouterNode(NodeBase):
    """The customer's ISP: joins the inside network to the outside one."""

    kind: Literal["router"]
    inside: NodeName
    outside: NodeName
    ports: dict[Port, PortPolicy] = Field(
        default={}, description="Policy per destination TCP port, for traffic going outside."
    )
    default: PortPolicy = PortPolicy.ALLOW
    outage: bool = Field(default=False, description="Nothing gets through at all.")
    inspection: Inspection | None = Field(
        default=None, description="SMTP inspection of connections going outside."
    )
    listed_on: list[DnsblZone] = Field(
        default=[],
        description="DNSBL zones that list the router's outside address (the customer's "
        "public IP): the lab DNS answers 127.0.0.2 for it there.",
    )

    @model_validator(mode="after")
    def _two_networks(self) -> RouterNode:
        if self.inside == self.outside:
            raise ValueError("'inside' and 'outside' must be different networks")
        return self


class DnsNode(NodeBase):
    """The lab's authoritative DNS: answers for every zone, NXDOMAIN for the rest."""

    kind: Literal["dns"]
    network: NodeName
    zones: dict[str, Zone] = {}
    faults: dict[str, DnsFault] = Field(default={}, description="Faults for single names.")
    auto_records: bool = Field(
        default=True, description="Publish A and PTR records for every node's hostname."
    )


class Listener(StrictModel):
    """One listening port of a mail server and its policy."""

    port: Port
    tls: ListenerTls = ListenerTls.STARTTLS
    auth: AuthPolicy = AuthPolicy.OFF
    require_tls: bool = Field(
        default=False, description="530 5.7.0 until the client has issued STARTTLS."
    )
    auth_requires_tls: bool = Field(
        default=True, description="AUTH is offered only once the session is encrypted."
    )
    starttls_broken: bool = Field(
        default=False,
        description="STARTTLS is advertised but answered 454 4.7.0 (e.g. the server cannot "
        "load its certificate).",
    )
    tls_versions: TlsVersions = TlsVersions.MODERN

    @model_validator(mode="after")
    def _tls_faults_need_tls(self) -> Listener:
        if self.starttls_broken and self.tls is not ListenerTls.STARTTLS:
            raise ValueError("'starttls_broken' needs a listener with tls: starttls")
        if self.tls_versions is not TlsVersions.MODERN and self.tls is ListenerTls.NONE:
            raise ValueError("'tls_versions' needs a listener with TLS (starttls or implicit)")
        return self


class Mailbox(StrictModel):
    """A mailbox hosted by a server."""

    state: MailboxState = MailboxState.ACTIVE


class Greylist(StrictModel):
    """Reject the first attempt of each (client, sender, recipient) with 451 4.7.1."""

    delay: Duration = 300.0
    recipients: list[str] = Field(default=[], description="Only these; empty means everyone.")


class RateLimit(StrictModel):
    """At most `connections` sessions per client address within `per` (world time, compressed
    by `lab_time` like queue retries); the next one is greeted with 421 4.7.0 and closed."""

    connections: int = Field(ge=1, description="Sessions served per client address and window.")
    per: Duration = Field(default=60.0, gt=0)
    ports: list[Port] = Field(default=[], description="Only these listeners; empty means all.")


class MailServerNode(NodeBase):
    """Fields of every SMTP server kind."""

    network: NodeName
    hostname: str
    ptr: str | None = Field(
        default="auto",
        description="Reverse DNS: 'auto' (the hostname), another name, or null for none.",
    )
    listeners: list[Listener]
    certificate: CertificateFault = CertificateFault.NONE
    auth_mechanisms: list[AuthMechanism] = [AuthMechanism.PLAIN, AuthMechanism.LOGIN]
    users: dict[str, str] = Field(default={}, description="Login name -> password.")
    domains: list[str] = Field(default=[], description="Domains whose mailboxes live here.")
    mailboxes: dict[str, Mailbox] = {}
    max_size: Size | None = Field(default=None, description="Advertised SIZE limit.")
    greylist: Greylist | None = None
    down: bool = Field(
        default=False, description="Switched off: its address exists in DNS but answers nothing."
    )
    listed_on: list[DnsblZone] = Field(
        default=[],
        description="DNSBL zones that list this server's address: the lab DNS answers "
        "127.0.0.2 for it there.",
    )
    # --- faults of the greeting (all listeners) ---
    banner_delay: Duration = Field(
        default=0.0,
        description="REAL seconds (not lab time) before the 220 greeting: it is measured "
        "against the client's own timeout.",
    )
    tarpit: bool = Field(
        default=False, description="Accept the TCP connection and never send a greeting."
    )
    no_service: bool = Field(
        default=False, description="Greet with 554 5.7.1 No SMTP service here, then close."
    )
    rate_limit: RateLimit | None = None
    esmtp: bool = Field(
        default=True,
        description="False: a HELO-only server; EHLO gets 502 5.5.1 and no extension exists.",
    )
    # --- checks of the client and the sender (Postfix restrictions, applied at RCPT to
    # sessions that are neither authenticated nor from a network allowed to relay) ---
    require_ptr: bool = Field(
        default=False,
        description="reject_unknown_client_hostname: the client's address needs a PTR whose "
        "name resolves back to it (FCrDNS).",
    )
    ptr_reject_code: Literal[450, 550] = Field(
        default=450,
        description="Postfix's unknown_client_reject_code: 450 (defer, the default) or 550.",
    )
    dnsbl: list[DnsblZone] = Field(
        default=[], description="reject_rbl_client: DNSBL zones asked about the client."
    )
    check_spf: bool = Field(
        default=False, description="Reject (550 5.7.23) when the sender domain's SPF fails."
    )
    reject_unknown_sender_domain: bool = Field(
        default=False, description="450 4.1.8 when the sender's domain has no A/MX records."
    )
    # --- faults later in the session ---
    max_recipients: int | None = Field(
        default=None, ge=1, description="smtpd_recipient_limit: 452 4.5.3 beyond this."
    )
    drop_during_data: bool = Field(
        default=False,
        description="Read the first part of the message, then close without a reply.",
    )

    @model_validator(mode="after")
    def _greeting_faults(self) -> MailServerNode:
        if self.tarpit and self.no_service:
            raise ValueError("'tarpit' and 'no_service' exclude each other: pick one greeting")
        if not self.esmtp:
            for listener in self.listeners:
                if listener.tls is ListenerTls.STARTTLS and (
                    listener.require_tls or listener.starttls_broken
                ):
                    raise ValueError(
                        f"listener {listener.port}: a HELO-only server (esmtp: false) cannot "
                        "offer STARTTLS"
                    )
                if listener.auth is not AuthPolicy.OFF:
                    raise ValueError(
                        f"listener {listener.port}: a HELO-only server (esmtp: false) cannot "
                        "offer AUTH (set auth: off)"
                    )
        return self

    @field_validator("listeners")
    @classmethod
    def _distinct_ports(cls, listeners: list[Listener]) -> list[Listener]:
        ports = [listener.port for listener in listeners]
        if len(ports) != len(set(ports)):
            raise ValueError("two listeners on the same port")
        if not listeners:
            raise ValueError("a mail server needs at least one listener")
        return listeners


class MxNode(MailServerNode):
    """A receiving mail server: accepts mail for its own domains only."""

    kind: Literal["mx"]
    listeners: list[Listener] = [Listener(port=25)]


class Connector(StrictModel):
    """Send mail for matching recipient domains to a fixed host ("*.net" patterns)."""

    domains: list[str]
    to: str = Field(description="'node' or 'node:port' or 'host:port'.")


class Routing(StrictModel):
    """How a relay finds the next hop for a recipient domain."""

    smarthost: str | None = Field(
        default=None, description="'node[:port]': relay everything there."
    )
    connectors: list[Connector] = []


class Queue(StrictModel):
    """Retry schedule and lifetime, in world time (compressed by `lab_time.speedup`)."""

    retry: list[Duration] = [900.0, 1800.0, 3600.0]
    lifetime: Duration = 4 * 3600.0


class RelayNode(MailServerNode):
    """A submission server / smart host: authenticates, relays, queues, bounces."""

    kind: Literal["relay"]
    listeners: list[Listener] = [
        Listener(port=25),
        Listener(port=587, auth=AuthPolicy.REQUIRED, require_tls=True),
    ]
    permit_relay: list[str] = Field(
        default=["authenticated"],
        description="Who may relay: 'authenticated', 'network:<name>' or 'node:<name>'.",
    )
    routing: Routing = Routing()
    queue: Queue = Queue()
    send_as: SendAsPolicy = Field(
        default=SendAsPolicy.ANY,
        description="'enforce': an authenticated user may only send as himself (550 5.7.60).",
    )


class AuthSettings(StrictModel):
    """Credentials a mail program is configured with."""

    user: str
    password: str
    mechanism: Literal["auto", "PLAIN", "LOGIN", "CRAM-MD5"] = "auto"


class MailSettings(StrictModel):
    """The customer's mail program settings ("outgoing server" dialog)."""

    server: str
    port: Port = 25
    security: Security = Security.NONE
    auth: AuthSettings | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    subject: str = "Test message from smtp-lab"
    size: Size = 1024
    timeout: Duration = 3.0
    helo: str | None = None
    verify_tls: bool = True


class MailSettingsPatch(StrictModel):
    """A correction to the mail program's settings: only the fields that change."""

    server: str | None = None
    port: Port | None = None
    security: Security | None = None
    auth: AuthSettings | None = None
    sender: str | None = Field(default=None, alias="from")
    to: list[str] | None = None
    size: Size | None = None
    helo: str | None = None

    def apply(self, settings: MailSettings) -> MailSettings:
        """The settings with this correction applied."""
        changes = self.model_dump(exclude_unset=True, by_alias=True)
        return MailSettings.model_validate({**settings.model_dump(by_alias=True), **changes})


class ClientNode(NodeBase):
    """The customer's computer and its mail program."""

    kind: Literal["client"]
    network: NodeName
    hostname: str = "pc.customer.lan"
    settings: MailSettings


Node = Annotated[
    RouterNode | DnsNode | RelayNode | MxNode | ClientNode, Field(discriminator="kind")
]


# --- expectations --------------------------------------------------------------------


class Expect(StrictModel):
    """What the mail program must see, and the fix that must make it deliver."""

    outcome: Outcome
    stage: Stage | None = None
    code: int | None = Field(default=None, ge=200, le=599)
    enhanced: str | None = Field(default=None, pattern=r"^[245]\.\d{1,3}\.\d{1,3}$")
    delivered_to: list[str] = Field(default=[], description="Mailboxes that must hold it.")
    diagnosis: str | None = Field(default=None, description="The expected catalog entry id.")
    fix: MailSettingsPatch | None = None


class LabTime(StrictModel):
    """How world time is compressed in the lab: queue retries, lifetimes, greylisting."""

    speedup: float = Field(default=3600.0, gt=0, description="World seconds per lab second.")


class Scenario(StrictModel):
    """A broken (or working) mail world, with the case a trainee has to solve."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    level: Level = Level.BEGINNER
    tags: list[str] = []
    ticket: str = Field(description="The customer's support ticket, as they wrote it.")
    lab_time: LabTime = LabTime()
    networks: dict[NodeName, Network]
    nodes: dict[NodeName, Node]
    expect: Expect

    @property
    def client(self) -> tuple[str, ClientNode]:
        """The customer's computer (validated to exist exactly once)."""
        for name, node in self.nodes.items():
            if isinstance(node, ClientNode):
                return name, node
        raise LookupError("scenario has no client node")
