"""DNS lookups for lab nodes, always against the lab DNS and never the host's resolver.

Used by the relay's MX routing and by the diagnosis engine, so every failure
is an exception that says which name, what went wrong and whether retrying
can help (`permanent`): NXDOMAIN and NODATA are answers, SERVFAIL and
silence are not.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.MX import MX
from dns.rdtypes.ANY.PTR import PTR

from lab.nodes.config import ResolverConfig

# --- errors ------------------------------------------------------------------------------------


class DnsLookupError(Exception):
    """A lookup that produced no usable records; `permanent` says whether retrying can help."""

    permanent: bool = False

    def __init__(self, name: str, rdtype: str, detail: str) -> None:
        self.name = name
        self.rdtype = rdtype
        self.detail = detail
        super().__init__(f"{name}: {detail}")


class NameNotFound(DnsLookupError):
    """NXDOMAIN: the name does not exist (permanent)."""

    permanent = True


class InvalidName(NameNotFound):
    """The text is not a domain name at all (permanent, like NXDOMAIN)."""


class NoRecords(DnsLookupError):
    """NODATA: the name exists but has no records of the type asked for (permanent)."""

    permanent = True


class DnsTemporaryFailure(DnsLookupError):
    """SERVFAIL, a timeout, or no nameserver gave a usable answer: try again later."""

    permanent = False


# --- the resolver ------------------------------------------------------------------------------


def make_resolver(config: ResolverConfig) -> dns.asyncresolver.Resolver:
    """A stub resolver that asks only the lab DNS: no resolv.conf, search list or cache."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [config.nameserver]
    resolver.port = config.port
    # One attempt per lookup: a silent server must cost one timeout, not several.
    resolver.timeout = config.timeout
    resolver.lifetime = config.timeout
    resolver.search = []
    resolver.use_search_by_default = False
    resolver.cache = None
    resolver.retry_servfail = False
    return resolver


def _display(name: str) -> str:
    return name.rstrip(".") or "."


def _absolute(name: str, rdtype: str) -> dns.name.Name:
    try:
        return dns.name.from_text(name, origin=dns.name.root)
    except dns.exception.DNSException as exc:
        raise InvalidName(_display(name), rdtype, f"not a valid domain name ({exc})") from exc


def _server_errors(errors: Iterable[tuple[object, ...]]) -> str:
    """'127.0.0.1:5353 answered SERVFAIL; ...' from dnspython's error trace."""
    texts = []
    for error in errors:
        server, _tcp, port, problem = error[0], error[1], error[2], error[3]
        if isinstance(problem, dns.exception.Timeout):
            what = "timed out"
        elif isinstance(problem, ConnectionRefusedError):
            what = "refused the connection"
        elif isinstance(problem, str):
            what = f"answered {problem}"
        else:
            what = f"failed: {problem}"
        # dnspython names servers "Do53:10.0.0.53@53": show the usual address:port.
        match = re.fullmatch(r"Do53:(.+)@\d+", str(server))
        texts.append(f"{match.group(1) if match else server}:{port} {what}")
    return "; ".join(dict.fromkeys(texts))  # UDP then TCP retries repeat themselves


def _rcodes(errors: Iterable[tuple[object, ...]]) -> list[str]:
    return [error[3] for error in errors if isinstance(error[3], str)]


async def _query(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: str
) -> dns.resolver.Answer:
    """One lookup with dnspython's exceptions turned into ours."""
    qname = _absolute(name, rdtype)
    shown = _display(name)
    try:
        return await resolver.resolve(qname, rdtype, search=False)
    except dns.resolver.NXDOMAIN as exc:
        raise NameNotFound(shown, rdtype, "NXDOMAIN (domain does not exist)") from exc
    except dns.resolver.NoAnswer as exc:
        raise NoRecords(shown, rdtype, f"no {rdtype} records (NODATA)") from exc
    except dns.resolver.NoNameservers as exc:
        errors = exc.kwargs.get("errors", [])
        rcodes = _rcodes(errors)
        what = rcodes[0] if rcodes else "no nameserver answered"
        raise DnsTemporaryFailure(
            shown, rdtype, f"{what} ({_server_errors(errors) or 'no nameservers'})"
        ) from exc
    except dns.exception.Timeout as exc:
        servers = ", ".join(f"{server}:{resolver.port}" for server in resolver.nameservers)
        raise DnsTemporaryFailure(
            shown, rdtype, f"timeout: no answer from {servers} within {resolver.lifetime:g} s"
        ) from exc
    except dns.exception.DNSException as exc:
        raise DnsTemporaryFailure(shown, rdtype, f"lookup failed ({exc})") from exc


def _literal(text: str) -> str | None:
    """The address in an IP literal ("192.0.2.1" or SMTP's "[192.0.2.1]"), else None."""
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return None


async def resolve_addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    """The IPv4 addresses of `name` (CNAMEs followed); an IP literal is returned as is."""
    literal = _literal(name)
    if literal is not None:
        return [literal]
    answer = await _query(resolver, name, "A")
    return [rdata.to_text() for rdata in answer]


@dataclass(frozen=True)
class MxAnswer:
    """Where mail for `domain` goes (RFC 5321 §5.1), most preferred first.

    `implicit`: no MX records, so the domain itself is the exchanger (A fallback).
    `null_mx`: the domain publishes `MX 0 .` (RFC 7505) and accepts no mail; `hosts` is empty.
    """

    domain: str
    hosts: list[tuple[int, str]]
    implicit: bool = False
    null_mx: bool = False


async def record_texts(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> list[str]:
    """The records of `name` as zone-file text ("10 mx.example.net."), as asked: no
    implicit MX, a null MX as "0 ."; raises ours for NXDOMAIN, NODATA and failures."""
    answer = await _query(resolver, name, rdtype)
    return [rdata.to_text() for rdata in answer]


async def mail_exchangers(resolver: dns.asyncresolver.Resolver, domain: str) -> MxAnswer:
    """The MX hosts of `domain`, sorted by (preference, name) so that tests are deterministic."""
    shown = _display(domain)
    literal = _literal(domain)
    if literal is not None:
        # An address literal bypasses DNS altogether (RFC 5321 §4.1.3).
        return MxAnswer(shown, [(0, literal)], implicit=True)
    try:
        answer = await _query(resolver, domain, "MX")
    except NoRecords:
        # The name exists without MX: it is its own exchanger at preference 0.
        return MxAnswer(shown, [(0, shown.lower())], implicit=True)
    records = [rdata for rdata in answer if isinstance(rdata, MX)]
    real = sorted(
        (record.preference, record.exchange.to_text(omit_final_dot=True).lower())
        for record in records
        if record.exchange != dns.name.root
    )
    # RFC 7505 §3: a null MX must be the only MX; mixed with real ones it is ignored.
    if not real and records:
        return MxAnswer(shown, [], null_mx=True)
    return MxAnswer(shown, real)


async def reverse_name(resolver: dns.asyncresolver.Resolver, address: str) -> str | None:
    """The PTR name of `address` without the final dot; None when there is none."""
    try:
        ptr_name = dns.reversename.from_address(address).to_text()
    except (dns.exception.DNSException, ValueError) as exc:
        raise ValueError(f"{address!r} is not an IP address") from exc
    try:
        answer = await _query(resolver, ptr_name, "PTR")
    except (NameNotFound, NoRecords):
        return None
    targets = sorted(
        rdata.target.to_text(omit_final_dot=True).lower()
        for rdata in answer
        if isinstance(rdata, PTR)
    )
    return targets[0] if targets else None
