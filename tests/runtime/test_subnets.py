"""Subnet choice without Docker: tables of host routes and docker networks in, /24s out."""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from lab.runtime.subnets import (
    DEFAULT_CANDIDATES,
    NEVER,
    NoFreeSubnet,
    choose_subnets,
    docker_networks,
    host_taken_networks,
    parse_route_text,
    parse_routes,
)
from lab.scenario.loader import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def nets(*texts: str) -> list[IPv4Network]:
    return [IPv4Network(text) for text in texts]


CHOOSE = [
    # (count, taken, expected)
    pytest.param(0, [], [], id="none-wanted"),
    pytest.param(2, [], nets("10.213.0.0/24", "10.213.1.0/24"), id="empty-host"),
    pytest.param(
        2, nets("10.213.0.0/24"), nets("10.213.1.0/24", "10.213.2.0/24"), id="skip-taken-24"
    ),
    pytest.param(
        1, nets("10.213.0.128/25"), nets("10.213.1.0/24"), id="partial-overlap-is-overlap"
    ),
    pytest.param(1, nets("10.213.0.7/32"), nets("10.213.1.0/24"), id="a-host-route"),
    pytest.param(
        2, nets("10.0.0.0/8"), nets("172.30.0.0/24", "172.30.1.0/24"), id="whole-10/8-taken"
    ),
    pytest.param(1, nets("10.213.0.0/16", "172.30.0.0/16"), nets("10.198.0.0/24"), id="third-pool"),
    pytest.param(
        3,
        nets("10.213.0.0/17", "10.213.128.0/18", "10.213.192.0/19", "10.213.224.0/20")
        + nets("10.213.240.0/21", "10.213.248.0/22", "10.213.252.0/23", "10.213.254.0/24"),
        nets("10.213.255.0/24", "172.30.0.0/24", "172.30.1.0/24"),
        id="last-of-a-pool-then-next",
    ),
]


@pytest.mark.parametrize(("count", "taken", "expected"), CHOOSE)
def test_choose_subnets(count: int, taken: list[IPv4Network], expected: list[IPv4Network]) -> None:
    assert choose_subnets(count, taken) == expected


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        # Documentation ranges are never used, even when offered and free.
        pytest.param(nets("192.0.2.0/23"), nets("192.0.3.0/24"), id="not-192.0.2"),
        pytest.param(nets("198.51.100.0/24", "10.1.0.0/24"), nets("10.1.0.0/24"), id="not-198"),
        pytest.param(nets("203.0.112.0/23"), nets("203.0.112.0/24"), id="not-203.0.113"),
        pytest.param(nets("127.0.0.0/16", "10.2.0.0/24"), nets("10.2.0.0/24"), id="not-loop"),
    ],
)
def test_never_ranges(candidates: list[IPv4Network], expected: list[IPv4Network]) -> None:
    assert choose_subnets(1, [], candidates) == expected


def test_chosen_subnets_are_distinct_and_free() -> None:
    taken = nets("10.213.3.0/24", "10.213.5.0/24")
    chosen = choose_subnets(6, taken)
    assert len(set(chosen)) == 6
    for subnet in chosen:
        assert subnet.prefixlen == 24
        assert not any(subnet.overlaps(other) for other in [*taken, *NEVER])


def test_no_free_subnet_says_where_it_looked() -> None:
    with pytest.raises(NoFreeSubnet, match=r"only 1 of 2 free /24 subnets in 10\.9\.9\.0/24"):
        choose_subnets(2, [], nets("10.9.9.0/24"))


def test_candidate_smaller_than_prefix_is_skipped() -> None:
    assert choose_subnets(1, [], nets("10.9.9.0/25", "10.9.8.0/24")) == nets("10.9.8.0/24")


def test_default_candidates_avoid_never_ranges() -> None:
    for pool in DEFAULT_CANDIDATES:
        assert not any(pool.overlaps(other) for other in NEVER)


ROUTES_JSON: list[dict[str, Any]] = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "172.17.0.0/16", "dev": "docker0", "prefsrc": "172.17.0.1"},
    {"dst": "192.0.2.0/24", "dev": "eth0"},
    {"type": "local", "dst": "192.0.2.2", "table": "local"},
    {"dst": "10.128.0.1", "dev": "ens4", "scope": "link"},  # onlink gateway host route
    {"dst": "0.0.0.0/1", "gateway": "10.8.0.1", "dev": "tun0"},  # VPN def1 halves
    {"dst": "128.0.0.0/1", "gateway": "10.8.0.1", "dev": "tun0"},
    {"dst": "fe80::/64", "dev": "eth0"},  # not IPv4: ignored
    {"dst": "junk"},
]


def test_parse_routes() -> None:
    assert parse_routes(ROUTES_JSON) == nets(
        "192.0.2.0/24",  # the default gateway's /24
        "172.17.0.0/16",
        "192.0.2.0/24",
        "192.0.2.2/32",
        "10.128.0.1/32",
        "10.8.0.0/24",  # a gateway of the VPN's halves; the halves themselves are catch-alls
        "10.8.0.0/24",
    )


ROUTES_TEXT = """\
default via 192.0.2.1 dev eth0
172.17.0.0/16 dev docker0 proto kernel scope link src 172.17.0.1 linkdown
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
local 127.0.0.0/8 dev lo table local proto kernel scope host src 127.0.0.1
broadcast 192.0.2.255 dev eth0 table local proto kernel scope link src 192.0.2.2
10.50.0.0/16 via 192.0.2.9 dev eth0
"""


def test_parse_route_text() -> None:
    assert parse_route_text(ROUTES_TEXT) == nets(
        "192.0.2.0/24",
        "172.17.0.0/16",
        "192.0.2.0/24",
        "127.0.0.0/8",
        "192.0.2.255/32",
        "192.0.2.0/24",
        "10.50.0.0/16",
    )


class FakeApi:
    def __init__(self, networks: list[dict[str, Any]]) -> None:
        self._networks = networks

    def networks(self) -> list[dict[str, Any]]:
        return self._networks


class FakeClient:
    def __init__(self, networks: list[dict[str, Any]]) -> None:
        self.api = FakeApi(networks)


def test_docker_networks_reads_ipam_subnets() -> None:
    client = FakeClient(
        [
            {"Name": "bridge", "IPAM": {"Config": [{"Subnet": "172.17.0.0/16"}]}},
            {"Name": "host", "IPAM": {"Config": []}},
            {"Name": "none", "IPAM": None},
            {
                "Name": "dual",
                "IPAM": {"Config": [{"Subnet": "fd00::/64"}, {"Subnet": "10.7.0.0/24"}]},
            },
            {"Name": "odd", "IPAM": {"Config": [{"Gateway": "10.9.0.1"}, {"Subnet": "bad"}]}},
        ]
    )
    assert docker_networks(client) == nets("172.17.0.0/16", "10.7.0.0/24")


def test_host_taken_networks_reads_this_host() -> None:
    taken = host_taken_networks(FakeClient([{"IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}}]))
    # The local table always holds loopback; docker networks come last.
    assert IPv4Network("127.0.0.0/8") in taken
    assert taken[-1] == IPv4Network("10.77.0.0/24")
    assert len(taken) == len(set(taken))
    chosen = choose_subnets(2, taken)
    assert not any(subnet.overlaps(other) for subnet in chosen for other in taken)


def test_subnets_reserved_by_a_lab_being_made_are_not_planned_again() -> None:
    from lab.runtime.docker.networks import NETWORK_LOCK, docker_subnets, release, reserve

    scenario = load_scenario(SCENARIOS / "happy-path.yaml")
    engine = FakeClient([])
    first = docker_subnets(scenario, engine)
    with NETWORK_LOCK:
        reserve(first.values())
    try:
        second = docker_subnets(scenario, engine)
    finally:
        release(first.values())
    assert not any(a.overlaps(b) for a in first.values() for b in second.values())
    assert docker_subnets(scenario, engine) == first  # released: free again
