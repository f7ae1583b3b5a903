"""The ISP router node: forwards from the customer's network to the outside, with policy.

In a container with `NET_ADMIN` it turns its `RouterConfig` into iptables
rules and then has nothing left to do but stay up: the kernel forwards.
`router_rules` is the whole policy as a pure function, written in the
canonical form `iptables -S` prints so that tests can compare the running
rules with it; `path_verdict` in `lab.topology` is the same decision for the
local backend.

Layout (measured to work with docker's bridge netfilter): the router's own
default route is deleted, so nothing leaves the lab through it; connections
from inside to outside pass the chain `SMTPLAB-ISP` (per-port drop/reject,
outage) and are masqueraded to the router's outside address; replies pass
by conntrack; nothing is forwarded inward.

SMTP inspection (`lab.nodes.inspection`): connections from inside to an
inspected port that the policy allows are REDIRECTed to the inspecting proxy
in this same program, which goes on to their original destination from the
router's outside address (as the MASQUERADE would have). A port that the
policy drops or rejects is not redirected: the policy wins, as in
`lab.topology.inspection_for`. The proxy listens before the rules exist and
before `router-ready` is logged, so no redirected connection finds it absent.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping, Sequence
from ipaddress import IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

from lab.nodes.config import RouterConfig
from lab.nodes.events import EventLog
from lab.scenario.model import PortPolicy
from lab.scenario.vocabulary import OUTAGE_UNREACHABLE

CHAIN = "SMTPLAB-ISP"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


class RouterSetupError(RuntimeError):
    """The router could not set up forwarding (missing interface, iptables refused)."""


def router_rules(config: RouterConfig, inside_if: str, outside_if: str) -> list[list[str]]:
    """iptables argument lists (after `iptables`) that enforce `config`, in order.

    Each list starts with `-t <table>`; the rest is exactly what `iptables -t
    <table> -S` prints for the rule, so tests can match them one to one.
    TCP ports get the policy of `config.ports`, else `config.default`; other
    protocols (the customer's DNS over UDP) pass unless there is an outage.
    """
    rules: list[list[str]] = [
        # Forward nothing unless a rule below says so: in particular nothing inward.
        ["-t", "filter", "-P", "FORWARD", "DROP"],
        ["-t", "filter", "-N", CHAIN],
        ["-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
         "-j", "ACCEPT"],
        ["-t", "filter", "-A", "FORWARD", "-i", inside_if, "-o", outside_if, "-j", CHAIN],
    ]  # fmt: skip
    chain = ["-t", "filter", "-A", CHAIN]
    if config.outage == OUTAGE_UNREACHABLE:
        # The uplink is down: the ISP's router says so, at once, for every packet.
        rules.append([*chain, "-j", "REJECT", "--reject-with", "icmp-net-unreachable"])
    elif config.outage:
        rules.append([*chain, "-j", "DROP"])
    else:
        for port in sorted(config.ports):
            rules.append([*chain, *_tcp(port), *_verdict(config.ports[port])])
        if config.default is not PortPolicy.ALLOW:
            rules.append([*chain, "-p", "tcp", *_verdict(config.default)])
        rules.append([*chain, "-j", "ACCEPT"])
    rules.extend(inspection_rules(config, inside_if))
    rules.extend(line_rules(config, inside_if, outside_if))
    # The outside sees the router's address, as with any ISP's NAT.
    rules.append(["-t", "nat", "-A", "POSTROUTING", "-o", outside_if, "-j", "MASQUERADE"])
    return rules


def inspection_rules(config: RouterConfig, inside_if: str) -> list[list[str]]:
    """REDIRECTs of inspected ports to the inspecting proxy, for the ports the policy allows."""
    inspection = config.inspection
    if inspection is None or config.outage:
        return []
    return [
        ["-t", "nat", "-A", "PREROUTING", "-i", inside_if, *_tcp(port),
         "-j", "REDIRECT", "--to-ports", str(inspection.listen_port)]
        for port in sorted(set(inspection.ports))
        if config.ports.get(port, config.default) is PortPolicy.ALLOW
    ]  # fmt: skip


def line_rules(config: RouterConfig, inside_if: str, outside_if: str) -> list[list[str]]:
    """The line's impairments: lost packets dropped at random (both directions), and
    REDIRECTs of the impaired ports the policy allows to the line proxy (delay, bandwidth,
    resets). A port the policy drops or rejects is left to the policy, as for inspection."""
    line = config.line
    if line is None or config.outage:
        return []
    rules: list[list[str]] = []
    if line.loss:
        # As `iptables -S` prints it: the kernel keeps the chance in units of 2^-31.
        probability = f"{round(line.loss * 2**31) / 2**31:.11f}"
        chance = ["-m", "statistic", "--mode", "random", "--probability", probability]
        ports: list[int | None] = [*sorted(set(line.ports))] or [None]
        for port in ports:
            for interface, direction in ((inside_if, "--dport"), (outside_if, "--sport")):
                match = ["-m", "tcp", direction, str(port)] if port is not None else []
                rules.append(["-t", "mangle", "-A", "PREROUTING", "-i", interface, "-p", "tcp",
                              *match, *chance, "-j", "DROP"])  # fmt: skip
    if not line.shapes_bytes:
        return rules
    prerouting = ["-t", "nat", "-A", "PREROUTING", "-i", inside_if]
    redirect = ["-j", "REDIRECT", "--to-ports", str(line.listen_port)]
    allowed = [port for port, policy in config.ports.items() if policy is PortPolicy.ALLOW]
    if line.ports:
        targets = [port for port in line.ports if config.ports.get(port, config.default)
                   is PortPolicy.ALLOW]  # fmt: skip
    elif config.default is PortPolicy.ALLOW:
        # Every port but those the policy stops: skip those, then take the rest.
        stopped = sorted(port for port in config.ports if port not in allowed)
        rules.extend([*prerouting, *_tcp(port), "-j", "RETURN"] for port in stopped)
        rules.append([*prerouting, "-p", "tcp", *redirect])
        return rules
    else:
        targets = allowed
    rules.extend([*prerouting, *_tcp(port), *redirect] for port in sorted(set(targets)))
    return rules


def _tcp(port: int) -> list[str]:
    return ["-p", "tcp", "-m", "tcp", "--dport", str(port)]


def _verdict(policy: PortPolicy) -> list[str]:
    if policy is PortPolicy.DROP:
        return ["-j", "DROP"]
    if policy is PortPolicy.REJECT:
        # A TCP reset, so the client sees "connection refused" rather than an ICMP error.
        return ["-j", "REJECT", "--reject-with", "tcp-reset"]
    return ["-j", "ACCEPT"]


# --- interfaces -----------------------------------------------------------------------------


def parse_interfaces(addresses: Sequence[Mapping[str, Any]]) -> dict[str, list[IPv4Interface]]:
    """Interface name -> IPv4 addresses, from `ip -j -4 addr show` output."""
    interfaces: dict[str, list[IPv4Interface]] = {}
    for link in addresses:
        name = str(link.get("ifname", ""))
        for info in link.get("addr_info", []):
            if info.get("family", "inet") != "inet" or "local" not in info:
                continue
            interface = IPv4Interface(f"{info['local']}/{info.get('prefixlen', 32)}")
            interfaces.setdefault(name, []).append(interface)
    return interfaces


def interface_in(subnet: IPv4Network, interfaces: Mapping[str, Iterable[IPv4Interface]]) -> str:
    """The interface holding an address in `subnet`.

    Raises:
        RouterSetupError: none does.
    """
    for name, addresses in interfaces.items():
        if any(address.ip in subnet for address in addresses):
            return name
    raise RouterSetupError(f"no interface has an address in {subnet}")


# --- the program ----------------------------------------------------------------------------


async def _run(*command: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await process.communicate()
    if process.returncode != 0:
        raise RouterSetupError(
            f"{' '.join(command)} failed (exit {process.returncode}): {stderr.decode().strip()}"
        )
    return stdout.decode()


async def setup(config: RouterConfig, log: EventLog | None = None) -> tuple[str, str]:
    """Apply `config` to this network namespace; returns (inside, outside) interface names.

    Raises:
        RouterSetupError: an interface is missing or a command failed.
    """
    interfaces = parse_interfaces(json.loads(await _run("ip", "-j", "-4", "addr", "show")))
    inside_if = interface_in(IPv4Network(config.inside_subnet), interfaces)
    outside_if = interface_in(IPv4Network(config.outside_subnet), interfaces)
    if IP_FORWARD.read_text().strip() != "1":
        # Docker sets the sysctl at create time; writing it needs /proc/sys writable.
        try:
            IP_FORWARD.write_text("1\n")
        except OSError as error:
            raise RouterSetupError(f"IP forwarding is off and cannot be enabled: {error}") from None
    # The router must never lead out of the lab: without a default route, anything not
    # in a lab subnet is unreachable from here and, through here, from the customer's side.
    routes = json.loads(await _run("ip", "-j", "-4", "route", "show", "default"))
    if routes:
        await _run("ip", "-4", "route", "del", "default")
    rules = router_rules(config, inside_if, outside_if)
    for rule in rules:
        await _run("iptables", "-w", *rule)
    if log is not None:
        log.emit(
            "router-ready",
            inside=inside_if,
            outside=outside_if,
            outage=config.outage,
            default=config.default.value,
            ports={str(port): policy.value for port, policy in sorted(config.ports.items())},
            inspection=config.inspection.ports if config.inspection is not None else None,
            line=config.line.model_dump(exclude={"listen_port"}) if config.line else None,
            rules=[" ".join(rule) for rule in rules],
        )
    return inside_if, outside_if


async def serve(config: RouterConfig) -> None:
    """Set up forwarding (and the inspecting and line proxies), then stay up until cancelled."""
    log = EventLog(config.data_dir, config.name, echo=True, max_bytes=config.events_max_bytes)
    proxy: asyncio.Server | None = None
    line_proxy: asyncio.Server | None = None
    try:
        if config.line is not None and config.line.shapes_bytes:
            from lab.nodes import line

            try:
                line_proxy = await line.start(config.line, host=config.listen_host, events=log)
            except OSError as error:
                raise RouterSetupError(f"the line proxy cannot listen: {error}") from None
        if config.inspection is not None:
            from lab.nodes import inspection

            try:
                proxy = await inspection.start(
                    config.inspection, host=config.listen_host, events=log
                )
            except OSError as error:
                raise RouterSetupError(f"the inspecting proxy cannot listen: {error}") from None
        await setup(config, log)
        await asyncio.Event().wait()
    except RouterSetupError as error:
        log.emit("router-failed", error=str(error))
        raise
    finally:
        for server in (proxy, line_proxy):
            if server is not None:
                server.close()
        log.close()
