"""The generated configuration each node program reads: concrete addresses, ports, seconds.

`lab.topology.resolve` writes these from a scenario; a runtime backend then
fills in where things really are (bind address, ports, directories). A node
program knows nothing else about the scenario: the same JSON file drives it
in a container and in the local backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lab.nodes.events import EVENTS_MAX_BYTES
from lab.scenario.model import (
    AuthMechanism,
    AuthPolicy,
    CertificateFault,
    DnsFault,
    Flavour,
    ListenerTls,
    MailboxState,
    MailSettings,
    MtaSoftware,
    PortPolicy,
    SendAsPolicy,
    TlsVersions,
    VrfyPolicy,
)


class ConfigModel(BaseModel):
    """Generated, not hand-written: still strict so that a stale field is caught."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ResolverConfig(ConfigModel):
    """Where a node asks DNS questions: always the lab DNS, never the host's resolver."""

    nameserver: str
    port: int = 53
    timeout: float = 2.0


class NodeConfig(ConfigModel):
    """What every node program gets."""

    name: str
    data_dir: Path = Field(description="Events log, mailboxes, queue live under here.")
    listen_host: str = "0.0.0.0"
    proxy_protocol: bool = Field(
        default=False,
        description="Servers expect a PROXY v1 header carrying the emulated peer address "
        "(local backend); in containers the real peer address is used.",
    )
    events_max_bytes: int = Field(
        default=EVENTS_MAX_BYTES,
        ge=4096,
        description="The event log stops growing here, with a `log-truncated` marker.",
    )


# --- dns -------------------------------------------------------------------------------------


class DnsRecordConfig(ConfigModel):
    """One record with an absolute owner name ("mail.example.com.") and rdata as text."""

    name: str
    type: Literal["A", "AAAA", "MX", "TXT", "PTR", "CNAME", "NS", "SOA"]
    value: str
    ttl: int = 300


class DnsConfig(NodeConfig):
    """The lab DNS: authoritative for `zones`; NXDOMAIN for every other name."""

    role: Literal["dns"] = "dns"
    port: int = Field(default=53, description="UDP and TCP; 0 binds an ephemeral port.")
    zones: list[str] = Field(description="Absolute origins, incl. reverse zones.")
    records: list[DnsRecordConfig]
    faults: dict[str, DnsFault] = Field(
        default={}, description="Absolute name -> fault; applies to the name and below it."
    )


# --- mail servers --------------------------------------------------------------------------


class ListenerConfig(ConfigModel):
    """A listening port: `port` is the port in the lab, `bind_port` where it really binds."""

    port: int
    bind_port: int = Field(default=0, description="0 binds an ephemeral port (local backend).")
    tls: ListenerTls
    auth: AuthPolicy
    require_tls: bool
    auth_requires_tls: bool
    starttls_broken: bool = False
    tls_versions: TlsVersions = TlsVersions.MODERN


class TlsFiles(ConfigModel):
    """PEM files of a server certificate (leaf first, then chain) and key."""

    cert_file: Path
    key_file: Path
    fault: CertificateFault = CertificateFault.NONE


class GreylistConfig(ConfigModel):
    """Greylisting with its delay already in lab seconds."""

    delay: float
    recipients: list[str] = []


class RelayPermit(ConfigModel):
    """Who may relay to domains that are not local."""

    authenticated: bool = True
    networks: list[str] = Field(default=[], description="CIDRs of clients that may relay.")


class NextHop(ConfigModel):
    """A fixed next hop: a name or address, a port, and the login the relay gives it."""

    host: str
    port: int = 25
    user: str | None = None
    password: str | None = None


class ConnectorConfig(ConfigModel):
    """Route recipient domains matching `domains` ("*.net", "example.org") to `to`."""

    domains: list[str]
    to: NextHop


class RoutingConfig(ConfigModel):
    """Next-hop selection: connectors first, then the smart host, else MX lookup."""

    smarthost: NextHop | None = None
    connectors: list[ConnectorConfig] = []


class QueueConfig(ConfigModel):
    """Retry schedule and lifetime in lab seconds (already compressed)."""

    retry: list[float]
    lifetime: float
    connect_timeout: float = 2.0


class RateLimitConfig(ConfigModel):
    """Sessions per client address and window (`per` already in lab seconds)."""

    connections: int = Field(ge=1)
    per: float = Field(gt=0)
    ports: list[int] = Field(default=[], description="Lab ports it applies to; empty: all.")


class SessionLimitsConfig(ConfigModel):
    """How many sessions at once, per client, and how long one may sit idle (real seconds)."""

    connections: int = Field(default=1000, ge=1)
    per_client: int = Field(default=50, ge=1)
    idle_timeout: float = Field(default=300.0, gt=0)


class ClientChecksConfig(ConfigModel):
    """DNS checks of the client and the sender, made at RCPT (see `mailserver.checks`)."""

    require_ptr: bool = False
    ptr_reject_code: Literal[450, 550] = 450
    dnsbl: list[str] = Field(default=[], description="Absolute DNSBL zones.")
    check_spf: bool = False
    reject_unknown_sender_domain: bool = False
    check_dmarc: bool = Field(default=False, description="At the end of DATA, not at RCPT.")

    @property
    def enabled(self) -> bool:
        """Whether any check needs a DNS lookup."""
        return bool(
            self.require_ptr
            or self.dnsbl
            or self.check_spf
            or self.reject_unknown_sender_domain
            or self.check_dmarc
        )


class MailServerConfig(NodeConfig):
    """An SMTP server: an `mx` receives for its domains, a `relay` also relays and queues."""

    role: Literal["relay", "mx"]
    hostname: str
    listeners: list[ListenerConfig]
    tls: TlsFiles | None = None
    auth_mechanisms: list[AuthMechanism]
    users: dict[str, str] = {}
    domains: list[str] = []
    mailboxes: dict[str, MailboxState] = {}
    max_size: int | None = None
    greylist: GreylistConfig | None = None
    permit_relay: RelayPermit = RelayPermit(authenticated=False)
    routing: RoutingConfig = RoutingConfig()
    relay_domains: list[str] = Field(
        default=[], description="Taken from anyone and forwarded (a backup MX); relays only."
    )
    relay_recipients: list[str] | None = Field(
        default=None, description="The addresses of relay_domains that exist; None: any."
    )
    queue: QueueConfig | None = Field(default=None, description="Relays only.")
    resolver: ResolverConfig | None = None
    ca_file: Path | None = Field(default=None, description="Trust anchor for outbound TLS.")
    # faults (all off by default)
    banner_delay: float = Field(default=0.0, ge=0, description="Real seconds, not lab time.")
    tarpit: bool = False
    no_service: bool = False
    rate_limit: RateLimitConfig | None = None
    limits: SessionLimitsConfig = SessionLimitsConfig()
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Processes accepting on the same ports (SO_REUSEPORT) when run as "
        "`python -m lab.nodes`; see `mailserver.workers` for the nodes that keep one.",
    )
    esmtp: bool = True
    checks: ClientChecksConfig = ClientChecksConfig()
    max_recipients: int | None = Field(default=None, ge=1)
    drop_during_data: bool = False
    send_as: SendAsPolicy = SendAsPolicy.ANY
    catch_all: bool = Field(default=False, description="Accept unknown local mailboxes at RCPT.")
    recipient_delimiter: str | None = None
    vrfy: VrfyPolicy = VrfyPolicy.ENABLED
    flavour: Flavour = Flavour.LAB
    software: MtaSoftware = MtaSoftware.LAB
    postfix: dict[str, str] = Field(default={}, description="Extra main.cf parameters.")
    fault_exempt: list[str] = Field(
        default=[],
        description="Client addresses the greeting faults (tarpit, delay, 554, rate limit) "
        "spare: the node's own, so that health checks see a banner. Loopback always is.",
    )


# --- client and router ------------------------------------------------------------------------


class ClientConfig(NodeConfig):
    """The customer's mail program and the machine it runs on."""

    role: Literal["client"] = "client"
    hostname: str
    settings: MailSettings
    resolver: ResolverConfig | None = None
    ca_file: Path | None = None


INSPECTION_PORT = 10025
LINE_PORT = 10026


class InspectionConfig(ConfigModel):
    """SMTP inspection (`lab.nodes.inspection`): which ports, which rewrites."""

    ports: list[int] = [25]
    mangle_banner: bool = True
    strip_starttls: bool = True
    listen_port: int = Field(
        default=INSPECTION_PORT,
        description="Where the inspecting proxy listens; iptables REDIRECTs `ports` to it.",
    )
    upstream: str | None = Field(
        default=None,
        description="'host:port' to forward every connection to, instead of the original "
        "destination of a REDIRECTed one (running without iptables, and tests).",
    )


class LineConfig(ConfigModel):
    """Line impairments (`lab.nodes.line`): delay, bandwidth, loss and resets."""

    latency: float = 0.0  # seconds, each direction
    bandwidth: int | None = None  # bits per second, each direction
    loss: float = 0.0  # share of packets
    reset_after: int | None = None  # bytes from the client
    ports: list[int] = []  # empty: every TCP port
    listen_port: int = Field(
        default=LINE_PORT,
        description="Where the line proxy listens; iptables REDIRECTs the impaired ports to it.",
    )

    @property
    def shapes_bytes(self) -> bool:
        """Whether the proxy is needed (loss alone is done by iptables)."""
        return bool(self.latency or self.bandwidth or self.reset_after)

    def covers(self, port: int) -> bool:
        """Whether connections to `port` are impaired."""
        return not self.ports or port in self.ports


class RouterConfig(NodeConfig):
    """The ISP router: per-port policy for connections from `inside` to `outside`."""

    role: Literal["router"] = "router"
    inside_subnet: str
    outside_subnet: str
    ports: dict[int, PortPolicy] = {}
    default: PortPolicy = PortPolicy.ALLOW
    outage: bool | Literal["unreachable"] = False  # "unreachable": ICMP net-unreachable
    inspection: InspectionConfig | None = None
    line: LineConfig | None = None


AnyNodeConfig = Annotated[
    DnsConfig | MailServerConfig | ClientConfig | RouterConfig, Field(discriminator="role")
]


def load_node_config(path: Path) -> AnyNodeConfig:
    """Read a generated node config file: the bare node config as JSON, for any role.

    Raises:
        OSError: the file cannot be read.
        pydantic.ValidationError: not a valid node config.
    """
    adapter: TypeAdapter[AnyNodeConfig] = TypeAdapter(AnyNodeConfig)
    return adapter.validate_json(path.read_bytes())
