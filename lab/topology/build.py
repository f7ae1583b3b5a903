"""`resolve`: the one step from a validated scenario to its `Topology`. It is the only place
that applies defaults depending on the rest of the file (addresses, the lab resolver, auto
A/PTR records, relay networks, compressed lab time), each through its own module."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Network
from pathlib import Path

from lab.nodes.config import AnyNodeConfig, ResolverConfig
from lab.scenario.client import ClientNode
from lab.scenario.dns import DnsNode
from lab.scenario.mailserver import Downtime, MailServerNode
from lab.scenario.model import Scenario
from lab.scenario.network import RouterNode
from lab.topology.addressing import assign_addresses, default_subnets, network_plans
from lab.topology.configs import client_config, mail_server_config, router_config
from lab.topology.plan import NodePlan, Topology
from lab.topology.records import DNS_PORT, dns_config


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
    networks = network_plans(scenario, subnets)
    addresses = assign_addresses(scenario, networks)
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
            config = router_config(name, data_dir, spec, subnets)
        elif isinstance(spec, DnsNode):
            hostname = "ns.lab"
            ports = (DNS_PORT,)
            config = dns_config(name, data_dir, scenario, spec, addresses, networks)
        elif isinstance(spec, MailServerNode):
            hostname = spec.hostname
            ports = tuple(listener.port for listener in spec.listeners)
            config = mail_server_config(
                name, data_dir, scenario, spec, addresses, networks, resolver, lab_seconds
            )
        else:
            assert isinstance(spec, ClientNode)
            hostname = spec.hostname
            config = client_config(name, data_dir, spec, resolver)
        running = not (isinstance(spec, MailServerNode) and spec.down is True)
        back_after = (
            spec.down.until * lab_seconds
            if isinstance(spec, MailServerNode) and isinstance(spec.down, Downtime)
            else None
        )
        nodes[name] = NodePlan(
            name, spec.kind, addresses[name], hostname, config, ports, running, back_after
        )
    return Topology(scenario, networks, nodes)
