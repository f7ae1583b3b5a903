"""Resolving scenarios: addresses, DNS records, compressed time, and path decisions."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.nodes.config import DnsConfig, MailServerConfig, RouterConfig
from lab.scenario.loader import load_scenario
from lab.topology import Action, Topology, path_verdict, resolve

SCENARIOS = Path(__file__).parents[1] / "scenarios"


def topology(name: str) -> Topology:
    return resolve(load_scenario(SCENARIOS / f"{name}.yaml"))


def test_addresses_follow_file_order_and_routers_take_dot_two() -> None:
    topo = topology("happy-path")
    assert topo.networks["office"].subnet == IPv4Network("10.213.0.0/24")
    assert topo.networks["office"].customer_side
    assert not topo.networks["internet"].customer_side
    assert topo.nodes["laptop"].addresses == {"office": IPv4Address("10.213.0.10")}
    assert topo.nodes["isp"].addresses == {
        "office": IPv4Address("10.213.0.2"),
        "internet": IPv4Address("10.213.1.2"),
    }
    assert topo.nodes["relay"].address == IPv4Address("10.213.1.11")


def test_pinned_subnets_are_kept() -> None:
    scenario = load_scenario(SCENARIOS / "happy-path.yaml")
    topo = resolve(
        scenario, {"office": IPv4Network("10.9.8.0/24"), "internet": IPv4Network("10.9.9.0/24")}
    )
    assert topo.nodes["mx"].address == IPv4Address("10.9.9.12")


def test_dns_gets_zone_records_plus_automatic_a_and_ptr() -> None:
    config = topology("happy-path").nodes["dns"].config
    assert isinstance(config, DnsConfig)
    records = {(r.name, r.type, r.value) for r in config.records}
    assert ("example.net.", "MX", "10 mx.example.net.") in records
    assert ("mx.example.net.", "A", "10.213.1.12") in records
    assert ("12.1.213.10.in-addr.arpa.", "PTR", "mx.example.net.") in records
    assert "1.213.10.in-addr.arpa." in config.zones


def test_world_time_is_compressed_into_lab_seconds() -> None:
    relay = topology("greylisted").nodes["relay"].config
    mx = topology("greylisted").nodes["mx"].config
    assert isinstance(relay, MailServerConfig)
    assert isinstance(mx, MailServerConfig)
    assert relay.queue is not None
    # speedup 3600: ten minutes of world time is 1/6 of a lab second
    assert relay.queue.retry == pytest.approx([600 / 3600, 1200 / 3600, 2400 / 3600])
    assert relay.queue.lifetime == pytest.approx(4.0)
    assert mx.greylist is not None
    assert mx.greylist.delay == pytest.approx(300 / 3600)


def test_relay_permit_by_node_becomes_that_routers_address() -> None:
    relay = topology("relay-denied").nodes["relay"].config
    assert isinstance(relay, MailServerConfig)
    assert relay.permit_relay.authenticated
    office_gw = topology("relay-denied").nodes["office-gw"].addresses["internet"]
    assert relay.permit_relay.networks == [f"{office_gw}/32"]


def test_router_config_carries_policy() -> None:
    config = topology("blocked-port-25").nodes["isp"].config
    assert isinstance(config, RouterConfig)
    assert config.ports == {25: "drop"}
    assert config.inside_subnet == "10.213.0.0/24"


@pytest.mark.parametrize(
    ("scenario", "source", "target", "port", "action", "by"),
    [
        # the ISP drops 25 but lets submission through
        ("blocked-port-25", "laptop", "relay", 25, Action.DROP, "isp"),
        ("blocked-port-25", "laptop", "relay", 587, Action.ALLOW, "isp"),
        ("port-25-refused", "laptop", "relay", 25, Action.REJECT, "isp"),
        # nothing listens on 2525: the host itself answers with a reset
        ("happy-path", "laptop", "relay", 2525, Action.REJECT, "isp"),
        # same network: no router involved, no policy
        ("blocked-port-25", "relay", "mx", 25, Action.ALLOW, None),
        # nothing routes from the internet into the customer's LAN
        ("happy-path", "relay", "laptop", 25, Action.UNREACHABLE, None),
        # a switched-off host answers nothing
        ("destination-down", "relay", "mx", 25, Action.DROP, None),
    ],
)
def test_path_verdicts(
    scenario: str, source: str, target: str, port: int, action: Action, by: str | None
) -> None:
    topo = topology(scenario)
    verdict = path_verdict(topo, source, str(topo.nodes[target].address), port)
    assert (verdict.action, verdict.by) == (action, by)


def test_nat_rewrites_the_source_to_the_routers_outside_address() -> None:
    topo = topology("happy-path")
    verdict = path_verdict(topo, "laptop", str(topo.nodes["relay"].address), 587)
    assert verdict.source == topo.nodes["isp"].addresses["internet"]


def test_unknown_addresses_are_unreachable() -> None:
    topo = topology("happy-path")
    assert path_verdict(topo, "laptop", "10.213.1.99", 25).action is Action.UNREACHABLE
    assert path_verdict(topo, "laptop", "not-an-address", 25).action is Action.UNREACHABLE


def test_two_routers_on_one_network_get_distinct_addresses() -> None:
    topo = topology("relay-denied")
    office, home = topo.nodes["office-gw"], topo.nodes["home-isp"]
    assert office.addresses["internet"] != home.addresses["internet"]
    all_addresses = [a for node in topo.nodes.values() for a in node.addresses.values()]
    assert len(all_addresses) == len(set(all_addresses))
