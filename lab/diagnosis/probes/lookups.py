"""DNS probes: the server's address, the domains' mail exchangers, reverse names.

`lookup_dns` answers `LookupDns` (the server's A record and the MX of the
domains, in parallel; then the server's PTR); `check_reverse_dns` answers
`CheckReverseDns` (PTR, then forward-confirmed). Every resolver trouble comes
back as a status, never as an exception: a failed lookup is a finding.
"""

from __future__ import annotations

import asyncio

import dns.exception
import dns.reversename

from lab.addresses import is_ip_literal
from lab.diagnosis.probes.context import ProbeContext
from lab.diagnosis.requests import (
    DnsResult,
    DomainLookup,
    LookupDns,
    NameLookup,
    ReverseResult,
)
from lab.nodes.resolver import DnsLookupError, NameNotFound, NoRecords


async def lookup_dns(context: ProbeContext, request: LookupDns) -> DnsResult:
    """The server's A record and the domains' MX, in parallel; then the server's PTR."""
    start = context.clock()
    domains = [d for d in dict.fromkeys((*request.recipient_domains, request.sender_domain)) if d]
    server, *lookups = await asyncio.gather(
        _lookup_name(context, request.server), *(_lookup_domain(context, d) for d in domains)
    )
    assert isinstance(server, NameLookup)
    by_domain = {lookup.domain: lookup for lookup in lookups if isinstance(lookup, DomainLookup)}
    ptr = await _reverse(context, server.addresses[0]) if server.addresses else None
    return DnsResult(
        server=server,
        ptr=ptr,
        recipients=tuple(by_domain[d] for d in request.recipient_domains if d in by_domain),
        sender=by_domain.get(request.sender_domain),
        duration=context.clock() - start,
    )


async def check_reverse_dns(context: ProbeContext, address: str) -> ReverseResult:
    """PTR of `address`, then the A records of that name (forward-confirmed reverse DNS)."""
    start = context.clock()
    ptr = await _reverse(context, address)
    if ptr is None:
        return ReverseResult(address, duration=context.clock() - start)
    try:
        forward = tuple(await context.target.resolve(ptr, "A"))
    except Exception as error:  # the name has no address: not confirmed
        return ReverseResult(
            address, ptr, error=str(error) or None, duration=context.clock() - start
        )
    return ReverseResult(address, ptr, forward, duration=context.clock() - start)


async def _lookup_name(context: ProbeContext, name: str) -> NameLookup:
    if is_ip_literal(name):
        return NameLookup(name, "literal", (name.strip("[]"),))
    start = context.clock()

    def took() -> float:
        return round((context.clock() - start) * 1000, 1)

    try:
        addresses = await context.target.resolve(name, "A")
    except NameNotFound as error:
        return NameLookup(name, "nxdomain", error=str(error), ms=took())
    except NoRecords as error:
        return NameLookup(name, "nodata", error=str(error), ms=took())
    except DnsLookupError as error:
        status = "nxdomain" if error.permanent else "temporary"
        return NameLookup(name, status, error=str(error), ms=took())
    except Exception as error:  # any resolver trouble is a failed lookup, not a crash
        return NameLookup(name, "temporary", error=str(error) or type(error).__name__, ms=took())
    if not addresses:
        return NameLookup(name, "nodata", error=f"{name} has no address", ms=took())
    return NameLookup(name, "ok", tuple(addresses), ms=took())


async def _lookup_domain(context: ProbeContext, domain: str) -> DomainLookup:
    if is_ip_literal(domain):
        return DomainLookup(domain, "ok", (domain.strip("[]"),))
    try:
        records = await context.target.resolve(domain, "MX")
    except NameNotFound as error:
        return DomainLookup(domain, "nxdomain", error=str(error))
    except NoRecords:
        records = [f"0 {domain}"]  # no MX: the domain is its own exchanger (RFC 5321 §5.1)
    except DnsLookupError as error:
        return DomainLookup(
            domain, "nxdomain" if error.permanent else "temporary", error=str(error)
        )
    except Exception as error:  # as above: a failed lookup, not a crash
        return DomainLookup(domain, "temporary", error=str(error) or type(error).__name__)
    # A null MX ("0 .", RFC 7505) is the root host; mixed with real exchangers it is
    # ignored (§3). Lowest preference first: the primary MX leads, backups follow.
    hosts = tuple(
        host
        for host in (
            record.split()[-1].rstrip(".").lower() for record in sorted(records, key=_preference)
        )
        if host
    )
    if not hosts:
        return DomainLookup(domain, "null-mx")
    if hosts != (domain.lower().rstrip("."),):
        return DomainLookup(domain, "ok", hosts)
    try:
        addresses = await context.target.resolve(domain, "A")
    except (NameNotFound, NoRecords):
        return DomainLookup(domain, "no-host")
    except Exception as error:  # the A fallback could not be checked
        return DomainLookup(domain, "no-mx", error=str(error) or type(error).__name__)
    return DomainLookup(domain, "no-mx", a_fallback=tuple(addresses))


def _preference(record: str) -> int:
    """The preference of an MX record's text ("10 mx.example.net.")."""
    first = record.split()[0] if record.split() else ""
    return int(first) if first.isdigit() else 0


async def _reverse(context: ProbeContext, address: str) -> str | None:
    try:
        name = dns.reversename.from_address(address).to_text()
    except (dns.exception.DNSException, ValueError):
        return None
    try:
        records = await asyncio.wait_for(
            context.target.resolve(name, "PTR"), max(context.settings.timeout, 1.0)
        )
    except Exception:  # no PTR, or no answer: either way there is no name to compare
        return None
    return records[0].rstrip(".").lower() if records else None
