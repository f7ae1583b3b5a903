"""Node configs: the file each node program reads, made from the node's scenario definition
with the facts only the whole topology knows (subnets, addresses, the lab resolver) and
world time compressed into lab seconds. The dns node's config is `records.dns_config`."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab.nodes.config import (
    ClientChecksConfig,
    ClientConfig,
    ConnectorConfig,
    GreylistConfig,
    InspectionConfig,
    LineConfig,
    ListenerConfig,
    MailServerConfig,
    NextHop,
    QueueConfig,
    RateLimitConfig,
    RelayPermit,
    ResolverConfig,
    RouterConfig,
    RoutingConfig,
    SessionLimitsConfig,
)
from lab.scenario.client import ClientNode
from lab.scenario.mailserver import MailServerNode, NextHopLogin, RelayNode
from lab.scenario.model import Scenario
from lab.scenario.network import RouterNode
from lab.scenario.vocabulary import SendAsPolicy
from lab.topology.plan import NetworkPlan
from lab.topology.records import absolute_name


def router_config(
    name: str, data_dir: Path, spec: RouterNode, subnets: Mapping[str, IPv4Network]
) -> RouterConfig:
    """The config of the router `name`: its two subnets, port policy, inspection, line."""
    return RouterConfig(
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
        line=(
            LineConfig(
                latency=spec.impairment.latency,
                bandwidth=spec.impairment.bandwidth,
                loss=spec.impairment.loss,
                reset_after=spec.impairment.reset_after,
                ports=spec.impairment.ports,
            )
            if spec.impairment
            else None
        ),
    )


def client_config(
    name: str, data_dir: Path, spec: ClientNode, resolver: ResolverConfig | None
) -> ClientConfig:
    """The config of the client `name`: its mail program's settings and the lab resolver."""
    return ClientConfig(
        name=name,
        data_dir=data_dir,
        hostname=spec.hostname,
        settings=spec.settings,
        resolver=resolver,
    )


def mail_server_config(
    name: str,
    data_dir: Path,
    scenario: Scenario,
    spec: MailServerNode,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    networks: Mapping[str, NetworkPlan],
    resolver: ResolverConfig | None,
    lab_seconds: float,
) -> MailServerConfig:
    """The config of the relay or mx `name`; `lab_seconds` is one world second in lab time."""
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
            smarthost=_next_hop(spec.routing.smarthost, scenario, spec.routing.smarthost_login)
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
        relay_domains=[d.lower() for d in spec.relay_domains]
        if isinstance(spec, RelayNode)
        else [],
        relay_recipients=(
            [a.lower() for a in spec.relay_recipients]
            if isinstance(spec, RelayNode) and spec.relay_recipients is not None
            else None
        ),
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
        limits=SessionLimitsConfig(
            connections=spec.limits.connections,
            per_client=spec.limits.per_client,
            idle_timeout=spec.limits.idle_timeout,  # real seconds: what a client waits
        ),
        esmtp=spec.esmtp,
        checks=ClientChecksConfig(
            require_ptr=spec.require_ptr,
            ptr_reject_code=spec.ptr_reject_code,
            dnsbl=[absolute_name(zone) for zone in spec.dnsbl],
            check_spf=spec.check_spf,
            reject_unknown_sender_domain=spec.reject_unknown_sender_domain,
            check_dmarc=spec.check_dmarc,
        ),
        max_recipients=spec.max_recipients,
        drop_during_data=spec.drop_during_data,
        send_as=spec.send_as if isinstance(spec, RelayNode) else SendAsPolicy.ANY,
        catch_all=isinstance(spec, RelayNode) and spec.catch_all,
        recipient_delimiter=spec.recipient_delimiter,
        vrfy=spec.vrfy,
        flavour=spec.flavour,
        software=spec.software,
        postfix=spec.postfix,
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


def _next_hop(text: str, scenario: Scenario, login: NextHopLogin | None = None) -> NextHop:
    """'node', 'node:587' or 'host.example:25'; a node stands for its hostname."""
    host, _, port = text.partition(":")
    node = scenario.nodes.get(host)
    if isinstance(node, MailServerNode):
        host = node.hostname
    return NextHop(
        host=host,
        port=int(port) if port else 25,
        user=login.user if login else None,
        password=login.password if login else None,
    )
