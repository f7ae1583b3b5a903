"""Resolve a scenario into a topology: subnets, addresses, DNS records, node configs, and the
path decisions between nodes. `resolve` (in `build`) is the entry point; `plan` holds the
resolved data, `addressing`, `records` and `configs` the parts of resolving, `paths` the
routing and firewall verdicts without I/O. Every name callers use is importable from here."""

from __future__ import annotations

from lab.scenario.network import FIRST_NODE_HOST, ROUTER_HOST
from lab.topology.addressing import DEFAULT_POOL, default_subnets
from lab.topology.build import resolve
from lab.topology.paths import Action, Verdict, inspection_for, line_for, path_verdict
from lab.topology.plan import NetworkPlan, NodePlan, Topology
from lab.topology.records import DNS_PORT, DNSBL_LISTED, dnsbl_name

__all__ = [
    "DEFAULT_POOL",
    "DNSBL_LISTED",
    "DNS_PORT",
    "FIRST_NODE_HOST",
    "ROUTER_HOST",
    "Action",
    "NetworkPlan",
    "NodePlan",
    "Topology",
    "Verdict",
    "default_subnets",
    "dnsbl_name",
    "inspection_for",
    "line_for",
    "path_verdict",
    "resolve",
]
