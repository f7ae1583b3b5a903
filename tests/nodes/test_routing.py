"""Next-hop selection: pattern matching table-driven, then lookups against the real lab DNS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import dns.asyncresolver
import pytest

from lab.nodes import dns as dns_node
from lab.nodes.config import (
    ConnectorConfig,
    DnsConfig,
    DnsRecordConfig,
    NextHop,
    ResolverConfig,
    RoutingConfig,
)
from lab.nodes.mailserver.routing import (
    Hop,
    RouteMethod,
    match_connector,
    next_hops,
    order_exchangers,
    pattern_matches,
)
from lab.nodes.resolver import make_resolver

LOOPBACK = "127.0.0.1"

# The lab world the relay tests route through (addresses are lab addresses: nothing
# listens on them; the queue tests map them to real loopback ports).
MX_NET = "10.213.1.12"
MX2_NET = "10.213.1.14"
APEX_ORG = "10.213.1.13"
CONNECTOR_B = "10.213.1.20"
SMARTHOST = "10.213.1.21"
WORLD_RECORDS = [
    ("example.net.", "MX", "10 mx.example.net."),
    ("example.net.", "MX", "20 mx2.example.net."),
    ("mx.example.net.", "A", MX_NET),
    ("mx2.example.net.", "A", MX2_NET),
    ("example.org.", "A", APEX_ORG),  # no MX: RFC 5321 A fallback
    ("nullmx.test.", "MX", "0 ."),
    ("dangling.test.", "MX", "10 mx.nowhere.test."),
    ("loop.test.", "MX", "10 mail.example.com."),
    ("mail.example.com.", "A", "10.213.1.10"),
    ("connector-b.example.com.", "A", CONNECTOR_B),
    ("smarthost.example.com.", "A", SMARTHOST),
    ("partner.net.", "MX", "10 mx.partner.net."),
    ("mx.partner.net.", "A", "10.213.1.30"),
]
WORLD_ZONES = [
    "example.net.",
    "example.org.",
    "nullmx.test.",
    "dangling.test.",
    "loop.test.",
    "example.com.",
    "partner.net.",
    "sick.test.",
]
WORLD_FAULTS = {"sick.test.": "servfail"}


def dns_config(
    data_dir: Path,
    records: list[tuple[str, str, str]] = WORLD_RECORDS,
    zones: list[str] = WORLD_ZONES,
    faults: dict[str, str] = WORLD_FAULTS,
) -> DnsConfig:
    """A lab DNS on an ephemeral loopback port (shared with the queue tests)."""
    return DnsConfig.model_validate(
        {
            "name": "dns",
            "data_dir": data_dir,
            "listen_host": LOOPBACK,
            "port": 0,
            "zones": zones,
            "records": [
                DnsRecordConfig.model_validate({"name": name, "type": rdtype, "value": value})
                for name, rdtype, value in records
            ],
            "faults": faults,
        }
    )


@pytest.fixture
async def running_dns(tmp_path: Path) -> AsyncIterator[dns_node.RunningDns]:
    running = await dns_node.start(dns_config(tmp_path / "dns"))
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def resolver(running_dns: dns_node.RunningDns) -> dns.asyncresolver.Resolver:
    return make_resolver(
        ResolverConfig(nameserver=LOOPBACK, port=running_dns.ports[53], timeout=1.0)
    )


# --- pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "domain", "matches"),
    [
        ("*", "anything.example", True),
        ("*.net", "example.net", True),
        ("*.net", "mail.example.NET", True),
        ("*.net", "example.network", False),
        ("*.net", "example.org", False),
        ("*.NET", "example.net.", True),
        ("*.example.org", "example.org", True),
        ("*.example.org", "eu.example.org", True),
        ("*.example.org", "badexample.org", False),
        ("example.org", "example.org", True),
        ("Example.Org", "EXAMPLE.org", True),
        ("example.org", "eu.example.org", False),
    ],
)
def test_pattern_matches(pattern: str, domain: str, matches: bool) -> None:
    assert pattern_matches(pattern, domain) is matches


def _connector(name: str, *domains: str) -> ConnectorConfig:
    return ConnectorConfig(domains=list(domains), to=NextHop(host=name))


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("example.net", "b"),  # "*.net" beats "*"
        ("shop.partner.net", "partner"),  # the longer suffix wins
        ("partner.net", "exact"),  # an exact name beats every wildcard
        ("example.org", "all"),
    ],
)
def test_most_specific_connector_wins(domain: str, expected: str) -> None:
    connectors = [
        _connector("all", "*"),
        _connector("b", "*.net"),
        _connector("partner", "*.partner.net"),
        _connector("exact", "partner.net"),
    ]
    matched = match_connector(domain, connectors)
    assert matched is not None
    assert matched[0].to.host == expected


def test_equal_connectors_keep_file_order() -> None:
    matched = match_connector(
        "a.net", [_connector("first", "*.net"), _connector("second", "*.net")]
    )
    assert matched is not None
    assert matched[0].to.host == "first"
    assert match_connector("a.org", [_connector("first", "*.net")]) is None


def test_order_exchangers() -> None:
    assert order_exchangers(
        [(20, "B.example."), (10, "z.example"), (10, "a.example"), (5, "b.example")]
    ) == [
        (5, "b.example"),
        (10, "a.example"),
        (10, "z.example"),
    ]


# --- with the lab DNS ------------------------------------------------------------------------


async def test_mx_hosts_in_preference_order(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("Example.NET", RoutingConfig(), resolver)
    assert decision.method is RouteMethod.MX
    assert decision.failure is None
    assert decision.hops == (
        Hop("mx.example.net", MX_NET, 25),
        Hop("mx2.example.net", MX2_NET, 25),
    )
    assert str(decision.hops[0]) == f"mx.example.net[{MX_NET}]:25"


async def test_a_fallback_without_mx(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("example.org", RoutingConfig(), resolver)
    assert decision.method is RouteMethod.IMPLICIT_MX
    assert decision.hops == (Hop("example.org", APEX_ORG, 25),)


async def test_null_mx_is_permanent(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("nullmx.test", RoutingConfig(), resolver)
    assert decision.hops == ()
    assert decision.failure is not None
    assert decision.failure.permanent
    assert decision.failure.status == "5.1.10"
    assert "does not accept mail (null MX)" in decision.failure.text


async def test_nxdomain_is_permanent(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("no-such-domain.invalid", RoutingConfig(), resolver)
    assert decision.failure is not None
    assert decision.failure.status == "5.1.2"
    assert decision.failure.text.startswith("Host or domain name not found.")
    assert "type=MX: Host not found" in decision.failure.text


async def test_servfail_is_temporary(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("sick.test", RoutingConfig(), resolver)
    assert decision.failure is not None
    assert not decision.failure.permanent
    assert decision.failure.status == "4.4.3"
    assert "Host not found, try again" in decision.failure.text


async def test_mx_host_without_address(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("dangling.test", RoutingConfig(), resolver)
    assert decision.failure is not None
    assert decision.failure.status == "5.4.4"
    assert "name=mx.nowhere.test type=A" in decision.failure.text
    assert decision.notes


async def test_mx_pointing_at_myself_is_a_loop(resolver: dns.asyncresolver.Resolver) -> None:
    decision = await next_hops("loop.test", RoutingConfig(), resolver, myself="MAIL.example.com")
    assert decision.failure is not None
    assert decision.failure.status == "5.4.6"


async def test_connector_beats_smarthost(resolver: dns.asyncresolver.Resolver) -> None:
    routing = RoutingConfig(
        smarthost=NextHop(host="smarthost.example.com", port=2525),
        connectors=[
            ConnectorConfig(domains=["*.net"], to=NextHop(host="connector-b.example.com", port=587))
        ],
    )
    via_connector = await next_hops("partner.net", routing, resolver)
    assert via_connector.method is RouteMethod.CONNECTOR
    assert via_connector.pattern == "*.net"
    assert via_connector.hops == (Hop("connector-b.example.com", CONNECTOR_B, 587),)
    via_smarthost = await next_hops("example.org", routing, resolver)
    assert via_smarthost.method is RouteMethod.SMARTHOST
    assert via_smarthost.hops == (Hop("smarthost.example.com", SMARTHOST, 2525),)


async def test_unresolvable_smarthost_waits(resolver: dns.asyncresolver.Resolver) -> None:
    routing = RoutingConfig(smarthost=NextHop(host="typo.example.com"))
    decision = await next_hops("example.net", routing, resolver)
    assert decision.failure is not None
    assert not decision.failure.permanent  # the admin's mistake: mail waits, not bounce
    assert decision.failure.status == "4.4.4"


async def test_literal_hops_need_no_dns() -> None:
    routing = RoutingConfig(smarthost=NextHop(host="[10.1.2.3]", port=25))
    decision = await next_hops("example.net", routing, None)
    assert decision.hops == (Hop("10.1.2.3", "10.1.2.3", 25),)
    literal_domain = await next_hops("[10.9.9.9]", RoutingConfig(), None)
    assert literal_domain.hops == (Hop("10.9.9.9", "10.9.9.9", 25),)
    no_dns = await next_hops("example.net", RoutingConfig(), None)
    assert no_dns.failure is not None
    assert no_dns.failure.status == "4.4.3"
