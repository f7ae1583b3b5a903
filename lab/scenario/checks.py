"""Cross-references a schema cannot express: node and network names that must exist."""

from __future__ import annotations

from lab.addresses import domain_of
from lab.scenario.model import (
    ClientNode,
    DnsNode,
    MailServerNode,
    RelayNode,
    RouterNode,
    Scenario,
)
from lab.scenario.network import FIRST_NODE_HOST, MAX_ROUTERS_PER_NETWORK

Path = tuple[str | int, ...]


def reference_problems(scenario: Scenario) -> list[tuple[Path, str]]:
    """Every dangling or contradictory reference, as (key path, message)."""
    problems: list[tuple[Path, str]] = []
    networks = set(scenario.networks)
    nodes = set(scenario.nodes)

    def need_network(path: Path, name: str) -> None:
        if name not in networks:
            problems.append((path, f"no network named {name!r}; networks: {_names(networks)}"))

    def need_node(path: Path, name: str) -> None:
        if name not in nodes:
            problems.append((path, f"no node named {name!r}; nodes: {_names(nodes)}"))

    clients = [name for name, node in scenario.nodes.items() if isinstance(node, ClientNode)]
    if len(clients) != 1:
        problems.append(
            (("nodes",), f"needs exactly one node of kind client, found {len(clients)}")
        )
    dns_nodes = [name for name, node in scenario.nodes.items() if isinstance(node, DnsNode)]
    if len(dns_nodes) > 1:
        problems.append((("nodes",), f"at most one node of kind dns, found {len(dns_nodes)}"))

    for name, node in scenario.nodes.items():
        base: Path = ("nodes", name)
        if isinstance(node, RouterNode):
            need_network((*base, "inside"), node.inside)
            need_network((*base, "outside"), node.outside)
        else:
            need_network((*base, "network"), node.network)
        if isinstance(node, DnsNode):
            for zone_name, zone in node.zones.items():
                for index, record in enumerate(zone.records):
                    if record.node is not None:
                        need_node(
                            (*base, "zones", zone_name, "records", index, "node"), record.node
                        )
        if isinstance(node, RelayNode):
            for index, rule in enumerate(node.permit_relay):
                problems.extend(_permit_problems((*base, "permit_relay", index), rule, scenario))
            if node.routing.smarthost:
                need_node((*base, "routing", "smarthost"), node.routing.smarthost.split(":")[0])
            for index, connector in enumerate(node.routing.connectors):
                target = connector.to.split(":")[0]
                if "." not in target:
                    need_node((*base, "routing", "connectors", index, "to"), target)
        if isinstance(node, MailServerNode):
            for address in node.mailboxes:
                domain = domain_of(address)
                if "@" not in address or domain not in {d.lower() for d in node.domains}:
                    problems.append(
                        (
                            (*base, "mailboxes", address),
                            f"mailbox must be an address in this server's domains "
                            f"({_names(set(node.domains))})",
                        )
                    )
    problems.extend(_network_problems(scenario))
    return problems


def _network_problems(scenario: Scenario) -> list[tuple[Path, str]]:
    """Routers per network and per direction, pinned subnets that overlap or are too small
    for the nodes `lab.topology.addressing` puts on them."""
    problems: list[tuple[Path, str]] = []
    routers = {n: r for n, r in scenario.nodes.items() if isinstance(r, RouterNode)}
    for network, spec in scenario.networks.items():
        count = sum(network in (r.inside, r.outside) for r in routers.values())
        if count > MAX_ROUTERS_PER_NETWORK:
            problems.append(
                (
                    ("networks", network),
                    f"at most {MAX_ROUTERS_PER_NETWORK} routers per network, found {count}",
                )
            )
        hosts = sum(getattr(node, "network", None) == network for node in scenario.nodes.values())
        if spec.subnet is not None and FIRST_NODE_HOST + hosts >= spec.subnet.num_addresses - 1:
            problems.append(
                (
                    ("networks", network, "subnet"),
                    f"{spec.subnet} is too small for its {hosts} nodes (they take "
                    f".{FIRST_NODE_HOST} to .{FIRST_NODE_HOST + hosts - 1})",
                )
            )
    pinned = [(name, net.subnet) for name, net in scenario.networks.items() if net.subnet]
    for index, (name, subnet) in enumerate(pinned):
        for other, other_subnet in pinned[:index]:
            if subnet.overlaps(other_subnet):
                problems.append(
                    (
                        ("networks", name, "subnet"),
                        f"{subnet} overlaps {other_subnet} of network {other!r}",
                    )
                )
    seen: dict[frozenset[str], str] = {}
    for name, router in routers.items():
        pair = frozenset((router.inside, router.outside))
        if pair in seen:
            problems.append(
                (
                    ("nodes", name),
                    f"router {seen[pair]!r} already joins {router.inside!r} and "
                    f"{router.outside!r}; one router per pair of networks",
                )
            )
        seen.setdefault(pair, name)
    return problems


def _permit_problems(path: Path, rule: str, scenario: Scenario) -> list[tuple[Path, str]]:
    kind, _, name = rule.partition(":")
    if rule == "authenticated":
        return []
    if kind == "network" and name in scenario.networks:
        return []
    if kind == "node" and name in scenario.nodes:
        return []
    return [(path, "expected 'authenticated', 'network:<network>' or 'node:<node>'")]


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "none"
