"""Next-hop selection for the relay: connectors, then the smart host, else MX lookup.

The order is the one Exchange-style connectors and Postfix's transport/relayhost
settings give: a connector whose address space matches the recipient domain
wins (most specific pattern first), then a smart host for everything, and only
then the public way, the domain's MX records from the lab DNS with RFC 5321
§5.1 rules: no MX but an address record means the domain itself is the mail
host (implicit MX), a null MX (RFC 7505, `MX 0 .`) means the domain takes no
mail at all. The result is the ordered list of (hostname, address, port) that
delivery tries, or a failure with the status a bounce or deferral carries.

Matching and ordering are pure functions; only `next_hops` does I/O (DNS).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from lab.addresses import ip_literal
from lab.nodes.config import ConnectorConfig, NextHop, RoutingConfig
from lab.nodes.resolver import (
    DnsLookupError,
    DnsTemporaryFailure,
    NameNotFound,
    mail_exchangers,
    resolve_addresses,
)

if TYPE_CHECKING:
    import dns.asyncresolver

SMTP_PORT = 25


class RouteMethod(StrEnum):
    """How the next hop was chosen."""

    CONNECTOR = "connector"
    SMARTHOST = "smarthost"
    MX = "mx"
    IMPLICIT_MX = "implicit-mx"  # no MX record: the domain's own address (RFC 5321 §5.1)


@dataclass(frozen=True)
class Hop:
    """One place to try: the name (for logs, TLS and Remote-MTA), its address, the port,
    and the login the relay gives it (a smart host's), kept out of `repr` and logs."""

    hostname: str
    address: str
    port: int
    login: tuple[str, str] | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        # Postfix's notation, which support staff recognise from logs: name[addr]:port
        return f"{self.hostname}[{self.address}]:{self.port}"


@dataclass(frozen=True)
class RouteFailure:
    """Why no hop could be found: an RFC 3463 status (4.x.x retry, 5.x.x bounce) and text."""

    status: str
    text: str

    @property
    def permanent(self) -> bool:
        """A 5.x.x failure bounces now; a 4.x.x one waits for the next retry."""
        return self.status.startswith("5")


@dataclass(frozen=True)
class RouteDecision:
    """Where mail for `domain` goes: `hops` in order, or a `failure` when there are none."""

    domain: str
    method: RouteMethod
    hops: tuple[Hop, ...] = ()
    failure: RouteFailure | None = None
    pattern: str | None = None  # the connector address space that matched
    notes: tuple[str, ...] = ()  # lookups that failed for some hosts while others worked


# --- pure parts ------------------------------------------------------------------------------


def pattern_matches(pattern: str, domain: str) -> bool:
    """Whether a connector address space covers `domain` (case-insensitive).

    "*" covers every domain; "*.net" covers every name below "net"
    ("example.net", "mail.example.net"), and "*.example.org" covers
    "example.org" itself and everything below it, which is what an admin
    writing an Exchange-style address space means; "example.org" is exact.
    """
    pattern = pattern.strip().lower().rstrip(".")
    domain = domain.strip().lower().rstrip(".")
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        suffix = pattern[2:]
        return domain == suffix or domain.endswith("." + suffix)
    return domain == pattern


def _specificity(pattern: str) -> tuple[int, int]:
    """Exact names beat wildcards; among wildcards, the longer suffix wins."""
    pattern = pattern.strip().lower().rstrip(".")
    if pattern == "*":
        return (0, 0)
    if pattern.startswith("*."):
        return (1, pattern.count(".") + 1)
    return (2, pattern.count(".") + 1)


def match_connector(
    domain: str, connectors: Sequence[ConnectorConfig]
) -> tuple[ConnectorConfig, str] | None:
    """The connector for `domain` and the pattern that matched; the most specific wins.

    Ties keep file order, so the first connector listed wins among equals.
    """
    best: tuple[tuple[int, int], int, ConnectorConfig, str] | None = None
    for index, connector in enumerate(connectors):
        for pattern in connector.domains:
            if not pattern_matches(pattern, domain):
                continue
            rank = _specificity(pattern)
            # Higher specificity first, then lower index (earlier in the file).
            if best is None or (rank, -index) > (best[0], -best[1]):
                best = (rank, index, connector, pattern)
    return None if best is None else (best[2], best[3])


def order_exchangers(hosts: Iterable[tuple[int, str]]) -> list[tuple[int, str]]:
    """MX hosts lowest preference first, duplicates dropped.

    RFC 5321 §5.1 asks senders to shuffle hosts of equal preference; the lab
    sorts them by name instead so that a scenario behaves the same on every run.
    """
    seen: set[str] = set()
    ordered: list[tuple[int, str]] = []
    for preference, host in sorted(hosts, key=lambda item: (item[0], item[1].lower())):
        name = host.lower().rstrip(".")
        if name and name not in seen:
            seen.add(name)
            ordered.append((preference, name))
    return ordered


def name_service_error(name: str, rdtype: str, error: DnsLookupError) -> str:
    """The diagnostic text for a failed lookup, worded like the resolver errors in MTA logs."""
    if isinstance(error, NameNotFound):
        reason = "Host not found"
    elif isinstance(error, DnsTemporaryFailure) or not error.permanent:
        reason = "Host not found, try again"
    else:
        reason = "No address associated with hostname"
    return (
        f"Host or domain name not found. Name service error for name={name} type={rdtype}: {reason}"
    )


# --- lookups ---------------------------------------------------------------------------------


async def next_hops(
    domain: str,
    routing: RoutingConfig,
    resolver: dns.asyncresolver.Resolver | None,
    *,
    myself: str | None = None,
) -> RouteDecision:
    """Where to deliver mail for `domain`: connectors, then smart host, else MX lookup.

    Args:
        domain: the recipient domain.
        routing: the relay's connectors and smart host.
        resolver: the lab DNS; None when the scenario has no DNS (then only
            address literals can be reached).
        myself: this server's hostname; MX hosts naming it are skipped, and a
            domain whose only MX is this server fails with 5.4.6 (mail loop)
            instead of bouncing between the relay and itself.
    """
    domain = domain.lower().rstrip(".")
    matched = match_connector(domain, routing.connectors)
    if matched is not None:
        connector, pattern = matched
        decision = await _fixed(domain, connector.to, RouteMethod.CONNECTOR, resolver)
        return RouteDecision(
            domain, decision.method, decision.hops, decision.failure, pattern, decision.notes
        )
    if routing.smarthost is not None:
        return await _fixed(domain, routing.smarthost, RouteMethod.SMARTHOST, resolver)
    return await _by_mx(domain, resolver, myself)


async def _fixed(
    domain: str,
    hop: NextHop,
    method: RouteMethod,
    resolver: dns.asyncresolver.Resolver | None,
) -> RouteDecision:
    """A configured next hop. If its name does not resolve, that is the admin's mistake:
    mail waits (4.4.4) for the configuration to be fixed instead of bouncing."""
    login = (hop.user, hop.password) if hop.user is not None and hop.password is not None else None
    literal = ip_literal(hop.host)
    if literal is not None:
        return RouteDecision(domain, method, (Hop(str(literal), str(literal), hop.port, login),))
    host = hop.host.lower().rstrip(".")
    if resolver is None:
        return RouteDecision(domain, method, failure=_no_resolver(host))
    try:
        addresses = await resolve_addresses(resolver, host)
    except DnsLookupError as error:
        status = "4.4.3" if not error.permanent else "4.4.4"
        return RouteDecision(
            domain, method, failure=RouteFailure(status, name_service_error(host, "A", error))
        )
    # The DNS server may answer the addresses in any order; like `order_exchangers`, the lab
    # tries them in one fixed order (lowest first) so that a scenario behaves the same.
    ordered = sorted(addresses, key=_address_key)
    hops = tuple(Hop(host, address, hop.port, login) for address in ordered)
    return RouteDecision(domain, method, hops)


def _address_key(address: str) -> tuple[int, int | str]:
    literal = ip_literal(address)
    return (0, int(literal)) if literal is not None else (1, address)


async def _by_mx(
    domain: str, resolver: dns.asyncresolver.Resolver | None, myself: str | None
) -> RouteDecision:
    literal = ip_literal(domain)
    if literal is not None:  # user@[10.0.0.5]: no DNS at all
        hop = Hop(str(literal), str(literal), SMTP_PORT)
        return RouteDecision(domain, RouteMethod.IMPLICIT_MX, (hop,))
    if resolver is None:
        return RouteDecision(domain, RouteMethod.MX, failure=_no_resolver(domain))
    try:
        answer = await mail_exchangers(resolver, domain)
    except DnsLookupError as error:
        text = name_service_error(domain, "MX", error)
        if isinstance(error, NameNotFound):
            failure = RouteFailure("5.1.2", text)
        elif error.permanent:
            failure = RouteFailure("5.4.4", text)
        else:
            failure = RouteFailure("4.4.3", text)
        return RouteDecision(domain, RouteMethod.MX, failure=failure)
    method = RouteMethod.IMPLICIT_MX if answer.implicit else RouteMethod.MX
    if answer.null_mx:
        return RouteDecision(
            domain,
            method,
            failure=RouteFailure("5.1.10", f"Domain {domain} does not accept mail (null MX)"),
        )
    exchangers = order_exchangers(answer.hosts)
    if myself is not None:
        me = myself.lower().rstrip(".")
        others = [(preference, host) for preference, host in exchangers if host != me]
        if exchangers and not others:
            return RouteDecision(
                domain,
                method,
                failure=RouteFailure("5.4.6", f"mail for {domain} loops back to myself"),
            )
        exchangers = others
    hops: list[Hop] = []
    notes: list[str] = []
    temporary: str | None = None
    permanent: str | None = None
    for _preference, host in exchangers:
        literal = ip_literal(host)
        if literal is not None:
            hops.append(Hop(str(literal), str(literal), SMTP_PORT))
            continue
        try:
            addresses = await resolve_addresses(resolver, host)
        except DnsLookupError as error:
            text = name_service_error(host, "A", error)
            notes.append(text)
            if error.permanent:
                permanent = permanent or text
            else:
                temporary = temporary or text
            continue
        hops.extend(Hop(host, address, SMTP_PORT) for address in addresses)
    unique = tuple(dict.fromkeys(hops))
    if unique:
        return RouteDecision(domain, method, unique, notes=tuple(notes))
    # Nothing reachable: a temporary error anywhere means a retry might find a host.
    if temporary is not None:
        failure = RouteFailure("4.4.3", temporary)
    else:
        failure = RouteFailure("5.4.4", permanent or f"no mail host found for {domain}")
    return RouteDecision(domain, method, failure=failure, notes=tuple(notes))


def _no_resolver(name: str) -> RouteFailure:
    return RouteFailure("4.4.3", f"cannot look up {name}: no DNS resolver configured")
