"""The router's iptables rules as data, and how it finds its interfaces: no Docker needed."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Literal

import pytest

from lab.nodes.config import InspectionConfig, LineConfig, RouterConfig
from lab.nodes.router import (
    CHAIN,
    RouterSetupError,
    interface_in,
    line_rules,
    parse_interfaces,
    router_rules,
)
from lab.scenario.model import PortPolicy

BASE = [
    ["-t", "filter", "-P", "FORWARD", "DROP"],
    ["-t", "filter", "-N", CHAIN],
    ["-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
     "-j", "ACCEPT"],
    ["-t", "filter", "-A", "FORWARD", "-i", "eth0", "-o", "eth1", "-j", CHAIN],
]  # fmt: skip
NAT = ["-t", "nat", "-A", "POSTROUTING", "-o", "eth1", "-j", "MASQUERADE"]
CHAIN_RULE = ["-t", "filter", "-A", CHAIN]
DROP_25 = [*CHAIN_RULE, "-p", "tcp", "-m", "tcp", "--dport", "25", "-j", "DROP"]
REJECT_587 = [*CHAIN_RULE, "-p", "tcp", "-m", "tcp", "--dport", "587", "-j", "REJECT",
              "--reject-with", "tcp-reset"]  # fmt: skip
ALLOW_465 = [*CHAIN_RULE, "-p", "tcp", "-m", "tcp", "--dport", "465", "-j", "ACCEPT"]
ACCEPT_REST = [*CHAIN_RULE, "-j", "ACCEPT"]


def config(
    ports: dict[int, PortPolicy] | None = None,
    default: PortPolicy = PortPolicy.ALLOW,
    outage: bool | Literal["unreachable"] = False,
    inspection: InspectionConfig | None = None,
) -> RouterConfig:
    return RouterConfig(
        name="isp",
        data_dir=Path("/var/lib/smtplab/isp"),
        inside_subnet="10.213.0.0/24",
        outside_subnet="10.213.1.0/24",
        ports=ports or {},
        default=default,
        outage=outage,
        inspection=inspection,
    )


def redirect(port: int) -> list[str]:
    return ["-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp", "-m", "tcp",
            "--dport", str(port), "-j", "REDIRECT", "--to-ports", "10025"]  # fmt: skip


RULES = [
    pytest.param(config(), [*BASE, ACCEPT_REST, NAT], id="allow-all"),
    pytest.param(
        config({587: PortPolicy.REJECT, 25: PortPolicy.DROP}),
        [*BASE, DROP_25, REJECT_587, ACCEPT_REST, NAT],
        id="ports-sorted",
    ),
    pytest.param(
        # Default drop applies to TCP only: the customer's DNS over UDP still passes.
        config({465: PortPolicy.ALLOW}, default=PortPolicy.DROP),
        [*BASE, ALLOW_465, [*CHAIN_RULE, "-p", "tcp", "-j", "DROP"], ACCEPT_REST, NAT],
        id="default-drop",
    ),
    pytest.param(
        config(default=PortPolicy.REJECT),
        [
            *BASE,
            [*CHAIN_RULE, "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
            ACCEPT_REST,
            NAT,
        ],
        id="default-reject",
    ),
    pytest.param(
        # An outage drops everything forwarded, whatever the port policies say.
        config({25: PortPolicy.ALLOW}, outage=True),
        [*BASE, [*CHAIN_RULE, "-j", "DROP"], NAT],
        id="outage",
    ),
    pytest.param(
        # The uplink is down: every packet gets ICMP network unreachable, at once.
        config({25: PortPolicy.DROP}, outage="unreachable"),
        [*BASE, [*CHAIN_RULE, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"], NAT],
        id="outage-unreachable",
    ),
    pytest.param(
        config(inspection=InspectionConfig(ports=[2525, 25])),
        [*BASE, ACCEPT_REST, redirect(25), redirect(2525), NAT],
        id="inspection",
    ),
    pytest.param(
        # The policy wins: a dropped port is not handed to the inspector.
        config({25: PortPolicy.DROP}, inspection=InspectionConfig(ports=[25, 587])),
        [*BASE, DROP_25, ACCEPT_REST, redirect(587), NAT],
        id="inspection-of-a-dropped-port",
    ),
    pytest.param(
        config(outage=True, inspection=InspectionConfig()),
        [*BASE, [*CHAIN_RULE, "-j", "DROP"], NAT],
        id="inspection-during-an-outage",
    ),
]


@pytest.mark.parametrize(("router", "expected"), RULES)
def test_router_rules(router: RouterConfig, expected: list[list[str]]) -> None:
    assert router_rules(router, "eth0", "eth1") == expected


def test_rules_name_the_interfaces_given() -> None:
    rules = router_rules(config(), "inside9", "outside7")
    assert rules[3][4:8] == ["-i", "inside9", "-o", "outside7"]
    assert rules[-1][5] == "outside7"


IP_ADDR: list[dict[str, Any]] = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "10.213.0.2", "prefixlen": 24}]},
    {
        "ifname": "eth1",
        "addr_info": [
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
            {"family": "inet", "local": "10.213.1.2", "prefixlen": 24},
        ],
    },
    {"ifname": "eth2", "addr_info": []},
]


def test_parse_interfaces() -> None:
    assert parse_interfaces(IP_ADDR) == {
        "lo": [IPv4Interface("127.0.0.1/8")],
        "eth0": [IPv4Interface("10.213.0.2/24")],
        "eth1": [IPv4Interface("10.213.1.2/24")],
    }


@pytest.mark.parametrize(
    ("subnet", "expected"), [("10.213.0.0/24", "eth0"), ("10.213.1.0/24", "eth1")]
)
def test_interface_in(subnet: str, expected: str) -> None:
    assert interface_in(IPv4Network(subnet), parse_interfaces(IP_ADDR)) == expected


def test_interface_missing() -> None:
    with pytest.raises(RouterSetupError, match=r"no interface has an address in 10\.9\.0\.0/24"):
        interface_in(IPv4Network("10.9.0.0/24"), parse_interfaces(IP_ADDR))


def to_line_proxy(port: int | None = None) -> list[str]:
    match = ["-m", "tcp", "--dport", str(port)] if port is not None else []
    return ["-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "tcp", *match,
            "-j", "REDIRECT", "--to-ports", "10026"]  # fmt: skip


def lose(interface: str, direction: str, port: int) -> list[str]:
    return ["-t", "mangle", "-A", "PREROUTING", "-i", interface, "-p", "tcp", "-m", "tcp",
            direction, str(port), "-m", "statistic", "--mode", "random", "--probability",
            "0.02000000002", "-j", "DROP"]  # fmt: skip


def with_line(policy: dict[int, PortPolicy] | None = None, **values: Any) -> RouterConfig:
    return config(policy).model_copy(update={"line": LineConfig(**values)})


LINE_RULES = [
    pytest.param(
        # Every port but the stopped ones goes through the line proxy.
        with_line({25: PortPolicy.DROP}, latency=0.6),
        [[*to_line_proxy(25)[:-4], "-j", "RETURN"], to_line_proxy()],
        id="latency-on-every-port",
    ),
    pytest.param(
        with_line({25: PortPolicy.DROP}, reset_after=1000, ports=[25, 587]),
        [to_line_proxy(587)],
        id="resets-on-listed-ports-the-policy-allows",
    ),
    pytest.param(
        # Loss alone needs no proxy: iptables drops real packets, both directions.
        with_line(loss=0.02, ports=[25]),
        [lose("eth0", "--dport", 25), lose("eth1", "--sport", 25)],
        id="loss",
    ),
    pytest.param(
        config(outage=True).model_copy(update={"line": LineConfig(latency=1.0)}),
        [],
        id="line-during-an-outage",
    ),
]


@pytest.mark.parametrize(("router", "expected"), LINE_RULES)
def test_line_rules(router: RouterConfig, expected: list[list[str]]) -> None:
    assert line_rules(router, "eth0", "eth1") == expected
    assert router_rules(router, "eth0", "eth1")[-1 - len(expected) : -1] == expected
