"""The lab DNS's data: its zones, the records the scenario gives, the automatic A and PTR
records of every mail server, the reverse zones of every network, the DNSBL listings, and
the faults per zone or name, all turned into the `DnsConfig` the dns node reads."""

from __future__ import annotations

from collections.abc import Mapping
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.scenario.dns import DnsNode
from lab.scenario.mailserver import MailServerNode
from lab.scenario.model import Scenario
from lab.scenario.network import RouterNode
from lab.topology.plan import NetworkPlan

DNS_PORT = 53
# What a DNSBL answers for a listed address ("127.0.0.2": listed, the common test value).
DNSBL_LISTED = "127.0.0.2"


def dns_config(
    name: str,
    data_dir: Path,
    scenario: Scenario,
    spec: DnsNode,
    addresses: Mapping[str, Mapping[str, IPv4Address]],
    networks: Mapping[str, NetworkPlan],
) -> DnsConfig:
    """The config of the dns node `name`, with every node's address filled in."""
    records: list[DnsRecordConfig] = []
    zones = [absolute_name(zone) for zone in spec.zones]
    for zone_name, zone in spec.zones.items():
        origin = absolute_name(zone_name)
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
            host = absolute_name(node.hostname)
            if (host, "A") not in existing:
                records.append(DnsRecordConfig(name=host, type="A", value=str(address)))
            if node.ptr is not None:
                target = absolute_name(node.hostname if node.ptr == "auto" else node.ptr)
                records.append(
                    DnsRecordConfig(name=_reverse_name(address), type="PTR", value=target)
                )
    zones.extend(_reverse_zone(network.subnet) for network in networks.values())
    records.extend(_dnsbl_records(scenario, addresses, zones))
    faults = {absolute_name(domain): fault for domain, fault in spec.faults.items()}
    for zone_name, zone in spec.zones.items():
        if zone.fault is not None:
            faults[absolute_name(zone_name)] = zone.fault
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
            origin = absolute_name(zone)
            if origin not in zones:
                zones.append(origin)
            owner = dnsbl_name(seen, origin)
            records.append(DnsRecordConfig(name=owner, type="A", value=DNSBL_LISTED))
            text = f"Listed: {seen} is listed on {origin.rstrip('.')}"
            records.append(DnsRecordConfig(name=owner, type="TXT", value=text))
    return records


def dnsbl_name(address: IPv4Address, zone: str) -> str:
    """The name a DNSBL is asked about `address`: its octets reversed, under `zone`."""
    return ".".join(reversed(str(address).split("."))) + "." + absolute_name(zone)


def absolute_name(name: str) -> str:
    """`name` in lower case and fully qualified (with its final dot)."""
    return name.lower().rstrip(".") + "."


def _qualify(name: str, origin: str) -> str:
    return name.lower() if name.endswith(".") else f"{name.lower()}.{origin}"


def _reverse_zone(subnet: IPv4Network) -> str:
    """The in-addr.arpa zone covering `subnet`, on an octet boundary (/24 -> 3 labels)."""
    octets = str(subnet.network_address).split(".")[: max(subnet.prefixlen // 8, 1)]
    return ".".join(reversed(octets)) + ".in-addr.arpa."


def _reverse_name(address: IPv4Address) -> str:
    return address.reverse_pointer + "."
