"""The mail servers of a scenario: the fields every SMTP server shares (listeners, TLS,
AUTH, mailboxes, greeting faults, client checks), the receiving mx and the relay with its
routing and queue."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lab.scenario.base import DnsblZone, NodeBase, NodeName, Port, StrictModel
from lab.scenario.names import Address, DomainPattern, Hostname, HostPort, Line, check_hostname
from lab.scenario.vocabulary import (
    AuthMechanism,
    AuthPolicy,
    CertificateFault,
    Flavour,
    ListenerTls,
    MailboxState,
    MtaSoftware,
    SendAsPolicy,
    TlsVersions,
    VrfyPolicy,
)
from lab.units import Duration, Size


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
    recipients: list[Address] = Field(default=[], description="Only these; empty means everyone.")


class RateLimit(StrictModel):
    """At most `connections` sessions per client address within `per` (world time, compressed
    by `lab_time` like queue retries); the next one is greeted with 421 4.7.0 and closed."""

    connections: int = Field(ge=1, description="Sessions served per client address and window.")
    per: Duration = Field(default=60.0, gt=0)
    ports: list[Port] = Field(default=[], description="Only these listeners; empty means all.")


class SessionLimits(StrictModel):
    """Resources one server grants: beyond `connections` open sessions (or `per_client` from
    one address) a new one is greeted with 421 4.7.0 and closed; a session idle for
    `idle_timeout` (real seconds, RFC 5321 §4.5.3.2) gets 421 4.4.2 and is closed."""

    connections: int = Field(
        default=1000, ge=1, le=1_000_000, description="Open sessions at once, all clients."
    )
    per_client: int = Field(
        default=50,
        ge=1,
        le=1_000_000,
        description="Open sessions per client address (Postfix's "
        "smtpd_client_connection_count_limit); the server's own addresses and loopback are "
        "exempt.",
    )
    idle_timeout: Duration = Field(
        default=300.0, gt=0, le=86400.0, description="REAL seconds waiting for a command."
    )


class Downtime(StrictModel):
    """A host switched off at the start that comes back: `until` is world time from the
    lab's start (compressed by `lab_time`, like queue retries)."""

    until: Duration = Field(gt=0, le=30 * 86400.0)


class MailServerNode(NodeBase):
    """Fields of every SMTP server kind."""

    network: NodeName
    hostname: Hostname
    software: MtaSoftware = Field(
        default=MtaSoftware.LAB,
        description="'lab' (the lab's own server) or 'postfix' (real Postfix; docker backend).",
    )
    postfix: dict[str, str] = Field(
        default={},
        description="Extra main.cf parameters for a Postfix node (e.g. "
        "smtpd_client_connection_count_limit); refused on the lab's own server.",
    )
    ptr: str | None = Field(
        default="auto",
        description="Reverse DNS: 'auto' (the hostname), another name, or null for none.",
    )
    listeners: list[Listener] = Field(max_length=16)
    certificate: CertificateFault = CertificateFault.NONE
    auth_mechanisms: list[AuthMechanism] = [AuthMechanism.PLAIN, AuthMechanism.LOGIN]
    users: dict[Line, Line] = Field(default={}, description="Login name -> password.")
    domains: list[Hostname] = Field(default=[], description="Domains whose mailboxes live here.")
    mailboxes: dict[Address, Mailbox] = {}
    recipient_delimiter: str | None = Field(
        default=None,
        pattern=r"^[-+=_.]{1,5}$",
        description="Postfix's recipient_delimiter: 'bob+tag@' is delivered to 'bob@' "
        "(RFC 5233 subaddress); null: no subaddressing, 'bob+tag@' is an unknown mailbox.",
    )
    max_size: Size | None = Field(default=None, description="Advertised SIZE limit.")
    vrfy: VrfyPolicy = Field(
        default=VrfyPolicy.ENABLED,
        description="How VRFY is answered: 'enabled' as RCPT would decide (Postfix's default: "
        "252 2.0.0 for a known mailbox, 550 5.1.1 for an unknown one), 'ambiguous' 252 2.1.5 "
        "for every address (RFC 5321 §7.3, a server hiding its users), 'disabled' 502 5.5.1 "
        "(Postfix's disable_vrfy_command).",
    )
    greylist: Greylist | None = None
    down: bool | Downtime = Field(
        default=False,
        description="Switched off: its address exists in DNS but answers nothing; "
        "{until: 20m} switches it on again that much world time after the lab's start.",
    )
    flavour: Flavour = Field(
        default=Flavour.LAB,
        description="Word the replies as this MTA does (postfix, exim, exchange, gmail); "
        "codes stay the same.",
    )
    listed_on: list[DnsblZone] = Field(
        default=[],
        description="DNSBL zones that list this server's address: the lab DNS answers "
        "127.0.0.2 for it there.",
    )
    # --- faults of the greeting (all listeners) ---
    banner_delay: Duration = Field(
        default=0.0,
        le=600,
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
    limits: SessionLimits = SessionLimits()
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
    check_dmarc: bool = Field(
        default=False,
        description="At the end of DATA, refuse (550 5.7.1) a message whose From: domain "
        "publishes DMARC p=reject when SPF does not pass aligned (the lab signs no DKIM).",
    )
    # --- faults later in the session ---
    max_recipients: int | None = Field(
        default=None, ge=1, description="smtpd_recipient_limit: 452 4.5.3 beyond this."
    )
    drop_during_data: bool = Field(
        default=False,
        description="Read the first part of the message, then close without a reply.",
    )

    @field_validator("ptr")
    @classmethod
    def _ptr_name(cls, ptr: str | None) -> str | None:
        return ptr if ptr in (None, "auto") else check_hostname(ptr)

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

    domains: list[DomainPattern] = Field(min_length=1)
    to: HostPort = Field(description="'node' or 'node:port' or 'host:port'.")


class NextHopLogin(StrictModel):
    """The account a relay logs in with at its next hop (Postfix: smtp_sasl_password_maps)."""

    user: Line
    password: Line


class Routing(StrictModel):
    """How a relay finds the next hop for a recipient domain."""

    smarthost: HostPort | None = Field(
        default=None, description="'node[:port]': relay everything there."
    )
    smarthost_login: NextHopLogin | None = Field(
        default=None,
        description="The login the relay gives the smart host (AUTH after STARTTLS).",
    )
    connectors: list[Connector] = []

    @model_validator(mode="after")
    def _login_needs_a_smarthost(self) -> Routing:
        if self.smarthost_login is not None and self.smarthost is None:
            raise ValueError("smarthost_login is set, but there is no smarthost to log in to")
        return self


class Queue(StrictModel):
    """Retry schedule and lifetime, in world time (compressed by `lab_time.speedup`)."""

    retry: list[Duration] = Field(default=[900.0, 1800.0, 3600.0], max_length=100)
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
    catch_all: bool = Field(
        default=False,
        description="Accept every recipient of its domains at RCPT; a mailbox that does not "
        "exist is bounced afterwards from the queue (accept-then-bounce, 5.1.1).",
    )
    send_as: SendAsPolicy = Field(
        default=SendAsPolicy.ANY,
        description="'enforce': an authenticated user may only send as himself (550 5.7.60).",
    )
    relay_domains: list[Hostname] = Field(
        default=[],
        description="Domains it takes mail for from anyone and forwards to their MX hosts "
        "(a backup MX; Postfix's relay_domains).",
    )
    relay_recipients: list[Address] | None = Field(
        default=None,
        description="The addresses of relay_domains that exist (Postfix's "
        "relay_recipient_maps): others get 550 5.1.1 at RCPT. Null accepts every address "
        "and bounces the unknown ones later (backscatter).",
    )

    @model_validator(mode="after")
    def _relay_recipients_need_domains(self) -> RelayNode:
        if self.relay_recipients is not None:
            outside = [
                address
                for address in self.relay_recipients
                if address.rsplit("@", 1)[-1].lower() not in {d.lower() for d in self.relay_domains}
            ]
            if outside:
                raise ValueError(
                    f"relay_recipients: {outside[0]} is not in a domain of relay_domains"
                )
        return self
