"""The lab DNS node: an authoritative server on real UDP and TCP sockets, built on dnspython,
playing "the internet's DNS" for a lab: every zone the scenario names, and NXDOMAIN for every
other name (a lab never reaches a real resolver). `records` parses the configured data,
`handler` makes every decision without I/O, `server` runs the sockets."""

from __future__ import annotations

from lab.nodes.dns.handler import DnsHandler, HandlerResult, QueryOutcome, Transport
from lab.nodes.dns.records import parse_record
from lab.nodes.dns.server import DNS_PORT, RunningDns, serve, start

__all__ = [
    "DNS_PORT",
    "DnsHandler",
    "HandlerResult",
    "QueryOutcome",
    "RunningDns",
    "Transport",
    "parse_record",
    "serve",
    "start",
]
