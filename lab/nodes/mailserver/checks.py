"""DNS checks of the client and the sender, as Postfix restrictions make them at RCPT.

- `require_ptr` (reject_unknown_client_hostname): the client's address must
  have a PTR record whose name resolves back to the address (forward-confirmed
  reverse DNS). 450 4.7.25 by default, 550 5.7.25 with `ptr_reject_code: 550`;
  a DNS failure during the check is always 450, as in Postfix.
- `dnsbl` (reject_rbl_client): `<reversed address>.<zone>` A; any answer in
  127.0.0.0/8 means listed, 554 5.7.1. NXDOMAIN means not listed, and so does
  a DNSBL that does not answer: blocklists fail open.
- `reject_unknown_sender_domain`: the MAIL FROM domain needs an MX or an A
  record, else 450 4.1.8 (also when DNS fails: the check cannot tell).
- `check_spf`: a subset of SPF (RFC 7208), see `evaluate_spf`; only a `fail`
  result is refused, 550 5.7.23, as policyd-spf does by default.

The checks only read DNS and return a `Refusal` (or None); the handler
decides when they apply and records the decision.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.resolver
from dns.rdtypes.ANY.TXT import TXT

from lab.addresses import domain_of
from lab.nodes.config import ClientChecksConfig
from lab.nodes.resolver import (
    DnsLookupError,
    DnsTemporaryFailure,
    mail_exchangers,
    resolve_addresses,
    reverse_name,
)
from lab.replies import (
    S450_SENDER_DOMAIN_NOT_FOUND,
    S450_UNKNOWN_CLIENT,
    S550_SPF_FAIL,
    S550_UNKNOWN_CLIENT,
    S554_DNSBL_LISTED,
)

# RFC 7208 §4.6.4: at most 10 mechanisms and modifiers that cause DNS lookups.
SPF_LOOKUP_LIMIT = 10
LOOPBACK_NET = ipaddress.ip_network("127.0.0.0/8")


class Check(StrEnum):
    """Which check refused; also the `decision` of the "rcpt" event."""

    UNKNOWN_CLIENT = "unknown-client"
    DNSBL_LISTED = "dnsbl-listed"
    SENDER_DOMAIN_UNKNOWN = "sender-domain-unknown"
    SPF_FAIL = "spf-fail"
    DMARC_REJECT = "dmarc-reject"  # at the end of DATA (`dmarc.py`)


@dataclass(frozen=True)
class Refusal:
    """A check that failed: the reply to send, and why (for the event log)."""

    check: Check
    reply: str
    detail: str


class ClientChecks:
    """The configured checks, asked through the lab DNS.

    Args:
        config: which checks are on.
        resolver: the lab resolver; without one every check passes (nothing to ask).
    """

    def __init__(
        self, config: ClientChecksConfig, resolver: dns.asyncresolver.Resolver | None
    ) -> None:
        self.config = config
        self.resolver = resolver

    @property
    def enabled(self) -> bool:
        """Whether there is anything to check."""
        return self.config.enabled and self.resolver is not None

    async def check(self, client: str, sender: str) -> Refusal | None:
        """Client checks first (PTR, DNSBL), then the sender's (domain, SPF), as Postfix
        orders client before sender restrictions; the first refusal wins."""
        if not self.enabled:
            return None
        for refusal in (
            await self._ptr(client),
            await self._dnsbl(client),
            await self._sender_domain(sender),
            await self._spf(client, sender),
        ):
            if refusal is not None:
                return refusal
        return None

    async def _ptr(self, client: str) -> Refusal | None:
        if not self.config.require_ptr:
            return None
        assert self.resolver is not None
        permanent = (
            S550_UNKNOWN_CLIENT if self.config.ptr_reject_code == 550 else S450_UNKNOWN_CLIENT
        )
        try:
            name = await reverse_name(self.resolver, client)
            if name is None:
                return Refusal(Check.UNKNOWN_CLIENT, permanent(address=client), "no PTR record")
            try:
                addresses = await resolve_addresses(self.resolver, name)
            except DnsLookupError as error:
                if not error.permanent:
                    raise
                addresses = []
        except DnsTemporaryFailure as error:
            return Refusal(
                Check.UNKNOWN_CLIENT, S450_UNKNOWN_CLIENT(address=client), f"DNS failed: {error}"
            )
        except ValueError:  # not an IP address at all (a peer that is not a TCP socket)
            return Refusal(Check.UNKNOWN_CLIENT, permanent(address=client), "not an IP address")
        if client not in addresses:
            found = ", ".join(addresses) or "no address"
            detail = f"PTR {name} does not resolve back to {client} ({found})"
            return Refusal(Check.UNKNOWN_CLIENT, permanent(address=client), detail)
        return None

    async def _dnsbl(self, client: str) -> Refusal | None:
        if not self.config.dnsbl:
            return None
        assert self.resolver is not None
        try:
            address = ipaddress.IPv4Address(client)
        except ValueError:
            return None  # IPv6 DNSBLs are a different zone layout; the lab is IPv4
        for zone in self.config.dnsbl:
            listed = await self._listed(address, zone)
            if listed is not None:
                shown = zone.rstrip(".")
                reply = S554_DNSBL_LISTED(address=client, zone=shown)
                return Refusal(Check.DNSBL_LISTED, reply, f"{shown} answered {listed}")
        return None

    async def _listed(self, address: ipaddress.IPv4Address, zone: str) -> str | None:
        """The DNSBL's answer when it lists `address`, else None."""
        assert self.resolver is not None
        qname = ".".join(reversed(str(address).split("."))) + "." + zone.rstrip(".") + "."
        try:
            answer = await self.resolver.resolve(qname, "A", search=False)
        except dns.exception.DNSException:
            return None  # NXDOMAIN: not listed; no answer: fail open
        for rdata in answer:
            text = str(rdata.to_text())
            if ipaddress.ip_address(text) in LOOPBACK_NET:
                return text
        return None

    async def _sender_domain(self, sender: str) -> Refusal | None:
        if not self.config.reject_unknown_sender_domain:
            return None
        domain = domain_of(sender)
        if not domain:
            return None
        assert self.resolver is not None
        reply = S450_SENDER_DOMAIN_NOT_FOUND(address=sender)
        try:
            answer = await mail_exchangers(self.resolver, domain)
            if answer.implicit:
                # No MX: the domain needs an address to be a mail domain at all.
                await resolve_addresses(self.resolver, domain)
        except DnsLookupError as error:
            return Refusal(Check.SENDER_DOMAIN_UNKNOWN, reply, str(error))
        return None

    async def _spf(self, client: str, sender: str) -> Refusal | None:
        if not self.config.check_spf:
            return None
        domain = domain_of(sender)
        if not domain:
            return None  # the null sender: RFC 7208 checks the HELO name; the lab does not
        assert self.resolver is not None
        try:
            address = ipaddress.IPv4Address(client)
        except ValueError:
            return None
        result = await evaluate_spf(self.resolver, address, domain)
        if result.result is not SpfResult.FAIL:
            return None
        reply = S550_SPF_FAIL(domain=domain, client=client)
        return Refusal(Check.SPF_FAIL, reply, result.explanation)


# --- SPF --------------------------------------------------------------------------------------


class SpfResult(StrEnum):
    """RFC 7208 §2.6 results."""

    PASS = "pass"
    FAIL = "fail"
    SOFTFAIL = "softfail"
    NEUTRAL = "neutral"
    NONE = "none"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"


_QUALIFIERS = {
    "+": SpfResult.PASS,
    "-": SpfResult.FAIL,
    "~": SpfResult.SOFTFAIL,
    "?": SpfResult.NEUTRAL,
}


@dataclass(frozen=True)
class SpfVerdict:
    """A result and the term (or problem) that produced it."""

    result: SpfResult
    explanation: str


@dataclass
class _Budget:
    """DNS-querying terms left (shared by a record and everything it includes)."""

    left: int = SPF_LOOKUP_LIMIT

    def spend(self) -> bool:
        """Count one lookup; False once the limit is exceeded."""
        self.left -= 1
        return self.left >= 0


class _SpfError(Exception):
    def __init__(self, result: SpfResult, why: str) -> None:
        super().__init__(why)
        self.result = result


async def evaluate_spf(
    resolver: dns.asyncresolver.Resolver, address: ipaddress.IPv4Address, domain: str
) -> SpfVerdict:
    """`check_host()` of RFC 7208 for an IPv4 client, over a well-defined subset.

    Supported: the `v=spf1` record (exactly one), qualifiers `+ - ~ ?`,
    mechanisms `all`, `ip4:` (address or CIDR), `a`, `mx` (with optional
    `:domain` and `/prefix`), `include:` (nested, within the limit of 10
    DNS-querying terms) and the `redirect=` modifier. `ip6:` never matches
    an IPv4 client. Not supported, so they never match: `ptr`, `exists`;
    macros (`%{i}` ...) are a permerror. `exp=` and unknown modifiers are
    ignored, as the RFC says.
    """
    budget = _Budget()
    try:
        return await _check_host(resolver, address, domain.lower().rstrip("."), budget, top=True)
    except _SpfError as error:
        return SpfVerdict(error.result, str(error))


async def _check_host(
    resolver: dns.asyncresolver.Resolver,
    address: ipaddress.IPv4Address,
    domain: str,
    budget: _Budget,
    *,
    top: bool,
) -> SpfVerdict:
    record = await _spf_record(resolver, domain)
    if record is None:
        if top:
            return SpfVerdict(SpfResult.NONE, f"{domain} publishes no SPF record")
        raise _SpfError(SpfResult.PERMERROR, f"included domain {domain} has no SPF record")
    redirect: str | None = None
    for term in record.split()[1:]:
        name, _, value = term.partition("=")
        if value and ":" not in name and "/" not in name:
            if name.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers are ignored (RFC 7208 §6)
        qualifier = term[0] if term[0] in _QUALIFIERS else "+"
        mechanism = term[1:] if term[0] in _QUALIFIERS else term
        if "%" in mechanism:
            raise _SpfError(SpfResult.PERMERROR, f"macros are not supported: {term}")
        if await _matches(resolver, address, domain, mechanism, budget):
            return SpfVerdict(
                _QUALIFIERS[qualifier], f"{domain}: {address} matched {term!r} in {record!r}"
            )
    if redirect is not None:
        if not budget.spend():
            raise _SpfError(SpfResult.PERMERROR, "more than 10 DNS lookups")
        verdict = await _check_host(resolver, address, redirect.lower(), budget, top=False)
        return verdict
    return SpfVerdict(SpfResult.NEUTRAL, f"{domain}: nothing in {record!r} matched {address}")


async def _matches(
    resolver: dns.asyncresolver.Resolver,
    address: ipaddress.IPv4Address,
    domain: str,
    mechanism: str,
    budget: _Budget,
) -> bool:
    kind, _, argument = mechanism.partition(":")
    kind, slash, prefix_text = kind.partition("/")
    kind = kind.lower()
    if kind == "all":
        return True
    if kind == "ip4":
        try:
            return address in ipaddress.IPv4Network(argument, strict=False)
        except ValueError:
            raise _SpfError(SpfResult.PERMERROR, f"bad ip4 term: {mechanism}") from None
    if kind == "ip6":
        return False
    if kind in ("a", "mx", "include", "ptr", "exists") and not budget.spend():
        raise _SpfError(SpfResult.PERMERROR, "more than 10 DNS lookups")
    if kind == "include":
        if not argument:
            raise _SpfError(SpfResult.PERMERROR, "include without a domain")
        verdict = await _check_host(resolver, address, argument.lower(), budget, top=False)
        if verdict.result is SpfResult.TEMPERROR:
            raise _SpfError(SpfResult.TEMPERROR, verdict.explanation)
        return verdict.result is SpfResult.PASS
    if kind in ("a", "mx"):
        # "a:host/24": the prefix follows the domain argument; "a/24": it follows the kind.
        host, _, host_prefix = argument.partition("/")
        prefix_text = host_prefix or (prefix_text if slash else "")
        try:
            prefix = int(prefix_text) if prefix_text else 32
        except ValueError:
            raise _SpfError(SpfResult.PERMERROR, f"bad prefix in {mechanism}") from None
        target = (host or domain).lower()
        hosts = [target] if kind == "a" else await _mx_hosts(resolver, target)
        for name in hosts:
            for found in await _addresses(resolver, name):
                network = ipaddress.IPv4Network(f"{found}/{prefix}", strict=False)
                if address in network:
                    return True
        return False
    if kind in ("ptr", "exists"):
        return False  # unsupported (and "ptr" is deprecated by the RFC itself)
    raise _SpfError(SpfResult.PERMERROR, f"unknown mechanism {mechanism!r}")


async def _spf_record(resolver: dns.asyncresolver.Resolver, domain: str) -> str | None:
    """The one `v=spf1` TXT record of `domain`, None when there is none."""
    try:
        answer = await resolver.resolve(domain + ".", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return None
    except dns.exception.DNSException as error:
        raise _SpfError(SpfResult.TEMPERROR, f"TXT lookup of {domain} failed: {error}") from None
    records = []
    for rdata in answer:
        if isinstance(rdata, TXT):
            text = b"".join(rdata.strings).decode("utf-8", "replace")
            if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 "):
                records.append(text)
    if len(records) > 1:
        raise _SpfError(SpfResult.PERMERROR, f"{domain} publishes {len(records)} SPF records")
    return records[0] if records else None


async def _addresses(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    try:
        return await resolve_addresses(resolver, name)
    except DnsLookupError as error:
        if error.permanent:
            return []
        raise _SpfError(SpfResult.TEMPERROR, str(error)) from None


async def _mx_hosts(resolver: dns.asyncresolver.Resolver, domain: str) -> list[str]:
    try:
        answer = await mail_exchangers(resolver, domain)
    except DnsLookupError as error:
        if error.permanent:
            return []
        raise _SpfError(SpfResult.TEMPERROR, str(error)) from None
    # The "mx" mechanism uses MX records only: no implicit MX (RFC 7208 §5.4).
    return [] if answer.implicit else [host for _, host in answer.hosts]
