"""Resolve a scenario into a topology: subnets, addresses, DNS records and node configs.

This is the only place that applies defaults which depend on the rest of the
file (auto A/PTR records, relay networks, compressed lab time). Backends get
a `Topology` and only fill in runtime facts (bind ports, directories).
`path_verdict` is the routing and firewall decision, without I/O: the local
backend emulates it, the docker router enforces the same with iptables.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab.nodes.config import (
    AnyNodeConfig,
    ClientChecksConfig,
    ClientConfig,
    ConnectorConfig,
    DnsConfig,
    DnsRecordConfig,
    GreylistConfig,
    InspectionConfig,
    ListenerConfig,
    MailServerConfig,
    NextHop,
    QueueConfig,
    RateLimitConfig,
    RelayPermit,
    ResolverConfig,
    RouterConfig,
    RoutingConfig,
)
from lab.scenario.model import (
    ClientNode,
    DnsNode,
    MailServerNode,
    PortPolicy,
    RelayNode,
    RouterNode,
    Scenario,
    SendAsPolicy,
)

DNS_PORT = 53
ROUTER_HOST = 2  # .1 is the bridge on the docker host; routers take .2 to .9
FIRST_NODE_HOST = 10
# Where lab subnets come from when nothing else is said: a /24 each, carved in order.
DEFAULT_POOL = IPv4Network("10.213.0.0/16")
# What a DNSBL answers for a listed address ("127.0.0.2": listed, the common test value).
DNSBL_LISTED = "127.0.0.2"


@dataclass(frozen=True)
class NetworkPlan:
    """One lab network."""

    name: str
    subnet: IPv4Network
    # The network a router leads out of is the customer's side; the others are internal.
    customer_side: bool

    @property
    def gateway(self) -> IPv4Address:
        """The bridge address on the host (docker) side."""
        return self.subnet.network_address + 1


@dataclass(frozen=True)
class NodePlan:
    """One node: its kind, where it sits, and the config its program reads."""

    name: str
    kind: str
    addresses: Mapping[str, IPv4Address]
    hostname: str | None
    config: AnyNodeConfig
    tcp_ports: tuple[int, ...]
    running: bool = True  # False: the host is switched off (not started at all)

    @property
    def address(self) -> IPv4Address:
        """The node's first address (routers have one per network)."""
        return next(iter(self.addresses.values()))


class Action(StrEnum):
    """What happens to a new TCP connection."""

    ALLOW = "allow"
    DROP = "drop"
    REJECT = "reject"
    UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Verdict:
    """The fate of a connection from a node to an address and port, and who did it."""

    action: Action
    source: IPv4Address | None  # the address the server sees (after NAT)
    target: str | None  # the node that would answer
    by: str | None  # the router that decided, or None
    reason: str


@dataclass(frozen=True)
class Topology:
    """A resolved scenario."""

    scenario: Scenario
    networks: Mapping[str, NetworkPlan]
    nodes: Mapping[str, NodePlan]

    @property
    def client(self) -> NodePlan:
        """The customer's computer."""
        return self.nodes[self.scenario.client[0]]

    @property
    def dns(self) -> NodePlan | None:
        """The lab DNS node, if the scenario has one."""
        return next((node for node in self.nodes.values() if node.kind == "dns"), None)

    def node_at(self, address: IPv4Address) -> tuple[NodePlan, str] | None:
        """The node holding `address` and the network it is on."""
        for node in self.nodes.values():
            for network, node_address in node.addresses.items():
                if node_address == address:
                    return node, network
        return None

    def routers(self) -> Iterator[tuple[NodePlan, RouterNode]]:
        """Every router node with its scenario definition."""
        for node in self.nodes.values():
            spec = self.scenario.nodes[node.name]
            if isinstance(spec, RouterNode):
                yield node, spec


def path_verdict(topology: Topology, source: str, address: str, port: int) -> Verdict:
    """What happens when `source` opens a TCP connection to `address:port`.

    Same network: direct. Across a router: only from its inside to its
    outside, subject to its outage flag and port policy, with the source
    rewritten to the router's outside address (NAT). Nothing routes inward.
    """
    origin = topology.nodes[source]
    try:
        destination = IPv4Address(address)
    except ValueError:
        return Verdict(Action.UNREACHABLE, None, None, None, f"{address} is not an IPv4 address")
    found = topology.node_at(destination)
    if found is None:
        return Verdict(Action.UNREACHABLE, None, None, None, f"no host has the address {address}")
    target, target_network = found
    if not target.running:
        return Verdict(Action.DROP, None, target.name, None, f"{target.name} is switched off")
    refused_or_allowed = Action.ALLOW if port in target.tcp_ports else Action.REJECT
    why_closed = f"nothing listens on {target.name}:{port}"
    if target_network in origin.addresses:
        source_address = origin.addresses[target_network]
        reason = "same network" if refused_or_allowed is Action.ALLOW else why_closed
        return Verdict(refused_or_allowed, source_address, target.name, None, reason)
    for router, spec in topology.routers():
        if spec.inside in origin.addresses and spec.outside == target_network:
            nat = router.addresses[spec.outside]
            if spec.outage:
                return Verdict(Action.DROP, nat, target.name, router.name, "ISP outage")
            policy = spec.ports.get(port, spec.default)
            if policy is PortPolicy.DROP:
                reason = f"{router.name} drops port {port}"
                return Verdict(Action.DROP, nat, target.name, router.name, reason)
            if policy is PortPolicy.REJECT:
                reason = f"{router.name} rejects port {port}"
                return Verdict(Action.REJECT, nat, target.name, router.name, reason)
            reason = (
                f"routed by {router.name}" if refused_or_allowed is Action.ALLOW else why_closed
            )
            return Verdict(refused_or_allowed, nat, target.name, router.name, reason)
    return Verdict(Action.UNREACHABLE, None, target.name, None, f"no route to {target_network}")


def inspection_for(topology: Topology, verdict: Verdict, port: int) -> InspectionConfig | None:
    """The SMTP inspection a connection passes through: that of the router which routed it,
    when the router inspects `port`; None for everything else."""
    if verdict.action is not Action.ALLOW or verdict.by is None:
        return None
    config = topology.nodes[verdict.by].config
    if not isinstance(config, RouterConfig) or config.inspection is None:
        return None
    return config.inspection if port in config.inspection.ports else None


# --- resolve ----------------------------------------------------------------------------------


def default_subnets(scenario: Scenario) -> dict[str, IPv4Network]:
    """Subnets for the local backend: pinned ones, else consecutive /24s of `DEFAULT_POOL`."""
    pool = DEFAULT_POOL.subnets(new_prefix=24)
    return {name: net.subnet or next(pool) for name, net in scenario.networks.items()}


def resolve(
    scenario: Scenario,
    subnets: Mapping[str, IPv4Network] | None = None,
    data_root: Path = Path("/var/lib/smtplab"),
) -> Topology:
    """The topology of `scenario`, with node data under `data_root/<node>`.

    Args:
        scenario: a validated scenario.
        subnets: network name -> subnet (docker picks ones free on the host);
            by default `default_subnets`.
        data_root: where each node's directory lives, as the node sees it.
    """
    subnets = dict(subnets or default_subnets(scenario))
    router_insides = {n.inside for n in scenario.nodes.values() if isinstance(n, RouterNode)}
    networks = {
        name: NetworkPlan(name, subnets[name], customer_side=name in router_insides)
        for name in scenario.networks
    }
    addresses = _assign_addresses(scenario, networks)
    dns_name = next((n for n, node in scenario.nodes.items() if isinstance(node, DnsNode)), None)
    resolver = (
        ResolverConfig(nameserver=str(next(iter(addresses[dns_name].values()))), port=DNS_PORT)
        if dns_name
        else None
    )
    lab_seconds = 1.0 / scenario.lab_time.speedup
    nodes: dict[str, NodePlan] = {}
    for name, spec in scenario.nodes.items():
        data_dir = data_root / name
        config: AnyNodeConfig
        hostname: str | None = None
        ports: tuple[int, ...] = ()
        if isinstance(spec, RouterNode):
            config = RouterConfig(
                name=name,
                data_dir=data_dir,
                inside_subnet=str(subnets[spec.inside]),
                outside_subnet=str(subnets[spec.outside]),
                ports=spec.ports,
                default=spec.default,
                outage=spec.outage,
                inspection=(
                    InspectionConfig(
                        ports=spec.inspection.ports,
                        mangle_banner=spec.inspection.mangle_banner,
                        strip_starttls=spec.inspection.strip_starttls,
                    )
                    if spec.inspection
                    else None
                ),
            )
        elif isinstance(spec, DnsNode):
            hostname = "ns.lab"
            ports = (DNS_PORT,)
            config = _dns_config(name, data_dir, scenario, spec, addresses, networks)
        elif isinstance(spec, MailServerNode):
            hostname = spec.hostname
            ports = tuple(listener.port for listener in spec.listeners)
            config = _mail_server_config(
                name, data_dir, scenario, spec, addresses, networks, resolver, lab_seconds
            )
        else:
            assert isinstance(spec, ClientNode)
            hostname = spec.hostname
            config = ClientConfig(
                name=name,
                data_dir=data_dir,
                hostname=spec.hostname,
                settings=spec.settings,
                resolver=resolver,
            )
        running = not (isinstance(spec, MailServerNode) and spec.down)
        nodes[name] = NodePlan(name, spec.kind, addresses[name], hostname, config, ports, running)
    return Topology(scenario, networks, nodes)


def _assign_addresses(
    scenario: Scenario, networks: Mapping[str, NetworkPlan]
) -> dict[str, dict[str, IPv4Address]]:
    """Routers take .2, .3 ... on each side; other nodes .10, .11 ... in file order."""
    next_host = dict.fromkeys(networks, FIRST_NODE_HOST)
    next_router = dict.fromkeys(networks, ROUTER_HOST)
    addresses: dict[str, dict[str, IPv4Address]] = {}
    for name, spec in scenario.nodes.items():
        if isinstance(spec, RouterNode):
            addresses[name] = {}
            for side in (spec.inside, spec.outside):
                addresses[name][side] = networks[side].subnet.network_address + next_router[side]
                next_router[side] += 1
        else:
            network = spec.network
            addresses[name] = {
                network: networks[network].subnet.network_address + next_host[network]
            }
            next_host[network] += 1
    return addresses


def _dns_config(
    name: str,
    data_dir: Path,
    scenario: Scenario,
    spec: DnsNode,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    networks: Mapping[str, NetworkPlan],
) -> DnsConfig:
    records: list[DnsRecordConfig] = []
    zones = [_absolute(zone) for zone in spec.zones]
    for zone_name, zone in spec.zones.items():
        origin = _absolute(zone_name)
        for record in zone.records:
            owner = origin if record.name == "@" else _qualify(record.name, origin)
            if record.node is not None:
                value = str(next(iter(addresses[record.node].values())))
            else:
                assert record.value is not None
                value = record.value
            records.append(
                DnsRecordConfig(name=owner, type=record.type, value=value, ttl=record.ttl)
            )
    if spec.auto_records:
        existing = {(r.name, r.type) for r in records}
        for node_name, node in scenario.nodes.items():
            if not isinstance(node, MailServerNode):
                continue
            address = next(iter(addresses[node_name].values()))
            host = _absolute(node.hostname)
            if (host, "A") not in existing:
                records.append(DnsRecordConfig(name=host, type="A", value=str(address)))
            if node.ptr is not None:
                target = _absolute(node.hostname if node.ptr == "auto" else node.ptr)
                records.append(
                    DnsRecordConfig(name=_reverse_name(address), type="PTR", value=target)
                )
    zones.extend(_reverse_zone(network.subnet) for network in networks.values())
    records.extend(_dnsbl_records(scenario, addresses, zones))
    faults = {_absolute(domain): fault for domain, fault in spec.faults.items()}
    for zone_name, zone in spec.zones.items():
        if zone.fault is not None:
            faults[_absolute(zone_name)] = zone.fault
    return DnsConfig(
        name=name, data_dir=data_dir, zones=zones, records=records, faults=faults, port=DNS_PORT
    )


def _dnsbl_records(
    scenario: Scenario,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    zones: list[str],
) -> list[DnsRecordConfig]:
    """`listed_on`: an A and a TXT record per listing, as real DNSBLs publish them.

    The address listed is the one other servers see: a mail server's own, a
    router's outside one (it masquerades). Each DNSBL zone is served too, so
    that a lookup of an unlisted address gets an authoritative NXDOMAIN.
    """
    records: list[DnsRecordConfig] = []
    for node_name, node in scenario.nodes.items():
        if isinstance(node, RouterNode):
            seen, listed_on = addresses[node_name][node.outside], node.listed_on
        elif isinstance(node, MailServerNode):
            seen, listed_on = next(iter(addresses[node_name].values())), node.listed_on
        else:
            continue
        for zone in listed_on:
            origin = _absolute(zone)
            if origin not in zones:
                zones.append(origin)
            owner = dnsbl_name(seen, origin)
            records.append(DnsRecordConfig(name=owner, type="A", value=DNSBL_LISTED))
            text = f"Listed: {seen} is listed on {origin.rstrip('.')}"
            records.append(DnsRecordConfig(name=owner, type="TXT", value=text))
    return records


def dnsbl_name(address: IPv4Address, zone: str) -> str:
    """The name a DNSBL is asked about `address`: its octets reversed, under `zone`."""
    return ".".join(reversed(str(address).split("."))) + "." + _absolute(zone)


def _mail_server_config(
    name: str,
    data_dir: Path,
    scenario: Scenario,
    spec: MailServerNode,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    networks: Mapping[str, NetworkPlan],
    resolver: ResolverConfig | None,
    lab_seconds: float,
) -> MailServerConfig:
    listeners = [
        ListenerConfig(
            port=listener.port,
            bind_port=listener.port,
            tls=listener.tls,
            auth=listener.auth,
            require_tls=listener.require_tls,
            auth_requires_tls=listener.auth_requires_tls,
            starttls_broken=listener.starttls_broken,
            tls_versions=listener.tls_versions,
        )
        for listener in spec.listeners
    ]
    greylist = (
        GreylistConfig(delay=spec.greylist.delay * lab_seconds, recipients=spec.greylist.recipients)
        if spec.greylist
        else None
    )
    permit = RelayPermit(authenticated=False)
    routing = RoutingConfig()
    queue = None
    if isinstance(spec, RelayNode):
        permit = _relay_permit(spec, scenario, addresses, networks)
        routing = RoutingConfig(
            smarthost=_next_hop(spec.routing.smarthost, scenario)
            if spec.routing.smarthost
            else None,
            connectors=[
                ConnectorConfig(domains=c.domains, to=_next_hop(c.to, scenario))
                for c in spec.routing.connectors
            ],
        )
        queue = QueueConfig(
            retry=[seconds * lab_seconds for seconds in spec.queue.retry],
            lifetime=spec.queue.lifetime * lab_seconds,
        )
    return MailServerConfig(
        name=name,
        data_dir=data_dir,
        role="relay" if isinstance(spec, RelayNode) else "mx",
        hostname=spec.hostname,
        listeners=listeners,
        auth_mechanisms=spec.auth_mechanisms,
        users=spec.users,
        domains=[domain.lower() for domain in spec.domains],
        mailboxes={address.lower(): box.state for address, box in spec.mailboxes.items()},
        max_size=spec.max_size,
        greylist=greylist,
        permit_relay=permit,
        routing=routing,
        queue=queue,
        resolver=resolver,
        banner_delay=spec.banner_delay,  # real seconds: what the client waits
        tarpit=spec.tarpit,
        no_service=spec.no_service,
        rate_limit=(
            RateLimitConfig(
                connections=spec.rate_limit.connections,
                per=spec.rate_limit.per * lab_seconds,
                ports=spec.rate_limit.ports,
            )
            if spec.rate_limit
            else None
        ),
        esmtp=spec.esmtp,
        checks=ClientChecksConfig(
            require_ptr=spec.require_ptr,
            ptr_reject_code=spec.ptr_reject_code,
            dnsbl=[_absolute(zone) for zone in spec.dnsbl],
            check_spf=spec.check_spf,
            reject_unknown_sender_domain=spec.reject_unknown_sender_domain,
        ),
        max_recipients=spec.max_recipients,
        drop_during_data=spec.drop_during_data,
        send_as=spec.send_as if isinstance(spec, RelayNode) else SendAsPolicy.ANY,
        fault_exempt=[str(address) for address in addresses[name].values()],
    )


def _relay_permit(
    spec: RelayNode,
    scenario: Scenario,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    networks: Mapping[str, NetworkPlan],
) -> RelayPermit:
    cidrs: list[str] = []
    for rule in spec.permit_relay:
        kind, _, target = rule.partition(":")
        if kind == "network":
            cidrs.append(str(networks[target].subnet))
        elif kind == "node":
            node = scenario.nodes[target]
            # a router is seen by servers by its outside address (it masquerades)
            seen = (
                [addresses[target][node.outside]]
                if isinstance(node, RouterNode)
                else addresses[target].values()
            )
            cidrs.extend(f"{address}/32" for address in seen)
    return RelayPermit(authenticated="authenticated" in spec.permit_relay, networks=cidrs)


def _next_hop(text: str, scenario: Scenario) -> NextHop:
    """'node', 'node:587' or 'host.example:25'; a node stands for its hostname."""
    host, _, port = text.partition(":")
    node = scenario.nodes.get(host)
    if isinstance(node, MailServerNode):
        host = node.hostname
    return NextHop(host=host, port=int(port) if port else 25)


def _absolute(name: str) -> str:
    return name.lower().rstrip(".") + "."


def _qualify(name: str, origin: str) -> str:
    return name.lower() if name.endswith(".") else f"{name.lower()}.{origin}"


def _reverse_zone(subnet: IPv4Network) -> str:
    """The in-addr.arpa zone covering `subnet`, on an octet boundary (/24 -> 3 labels)."""
    octets = str(subnet.network_address).split(".")[: max(subnet.prefixlen // 8, 1)]
    return ".".join(reversed(octets)) + ".in-addr.arpa."


def _reverse_name(address: IPv4Address) -> str:
    return address.reverse_pointer + "."
