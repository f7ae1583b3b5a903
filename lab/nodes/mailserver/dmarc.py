"""DMARC (RFC 7489) as a receiving server applies it at the end of DATA, OpenDMARC-style.

The policy is the `v=DMARC1` TXT record at `_dmarc.<From: domain>`, else at
`_dmarc.<organizational domain>` (§6.6.3). The message passes when SPF passes for
the envelope sender's domain and that domain is aligned with the From: domain
(`aspf`: relaxed by default, the same organizational domain; strict, the same
name). The lab's servers sign no mail, so DKIM never passes: a third-party
sender not in the domain's SPF fails, as it does in the world without a DKIM
key of the domain. Only `p=reject` (or `sp=` for a subdomain) refuses; `pct` is
not sampled (every failing message gets the policy), `none` and `quarantine`
deliver.

Simplification: the organizational domain is the last two labels (no Public
Suffix List), which is right for the lab's example.* names.
"""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import ipaddress
from dataclasses import dataclass
from enum import StrEnum

import dns.asyncresolver
import dns.exception
import dns.resolver
from dns.rdtypes.ANY.TXT import TXT

from lab.addresses import domain_of
from lab.nodes.mailserver.checks import Check, Refusal, SpfResult, evaluate_spf
from lab.replies import S550_DMARC_REJECT

_POLICIES = ("none", "quarantine", "reject")


class DmarcResult(StrEnum):
    """RFC 7489 §11.2 results the lab gives."""

    PASS = "pass"
    FAIL = "fail"
    NONE = "none"  # no policy published
    TEMPERROR = "temperror"


@dataclass(frozen=True)
class DmarcPolicy:
    """The tags of a DMARC record that decide the disposition."""

    policy: str
    subdomain_policy: str | None = None
    spf_alignment: str = "r"


@dataclass(frozen=True)
class DmarcVerdict:
    """The result, the policy that applies to the From: domain, and why."""

    result: DmarcResult
    domain: str
    disposition: str = "none"
    explanation: str = ""

    @property
    def rejects(self) -> bool:
        """The domain asks receivers to refuse this message."""
        return self.result is DmarcResult.FAIL and self.disposition == "reject"


def parse_dmarc(text: str) -> DmarcPolicy | None:
    """A `v=DMARC1; p=…` record; None when it is not one or has no valid `p=` (§6.6.3)."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            tags.setdefault(name.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        return None
    subdomain = tags.get("sp", "").lower()
    return DmarcPolicy(
        policy=policy,
        subdomain_policy=subdomain if subdomain in _POLICIES else None,
        spf_alignment="s" if tags.get("aspf", "r").lower() == "s" else "r",
    )


def organizational_domain(domain: str) -> str:
    """The registered domain, as the last two labels (see the module docstring)."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


def aligned(identifier: str, author: str, mode: str) -> bool:
    """Whether an authenticated domain is aligned with the From: domain (§3.1)."""
    identifier, author = identifier.lower().rstrip("."), author.lower().rstrip(".")
    if mode == "s":
        return identifier == author
    return organizational_domain(identifier) == organizational_domain(author)


def author_domain(message: bytes) -> str | None:
    """The domain of the From: header's address; None without exactly one From: address."""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    values = parser.parsebytes(message).get_all("From") or []
    addresses = email.utils.getaddresses([str(value) for value in values])
    found = [address for _, address in addresses if "@" in address]
    return domain_of(found[0]) if len(found) == 1 else None


async def evaluate_dmarc(
    resolver: dns.asyncresolver.Resolver,
    client: ipaddress.IPv4Address,
    sender: str,
    author: str,
) -> DmarcVerdict:
    """DMARC for a message from `client` with envelope `sender` and From: domain `author`."""
    try:
        found = await _policy(resolver, author)
    except dns.exception.DNSException as error:
        return DmarcVerdict(DmarcResult.TEMPERROR, author, explanation=str(error))
    if found is None:
        return DmarcVerdict(DmarcResult.NONE, author, explanation=f"{author} publishes no DMARC")
    policy, at = found
    subdomain = at != author and policy.subdomain_policy is not None
    disposition = policy.subdomain_policy if subdomain else policy.policy
    assert disposition is not None
    envelope_domain = domain_of(sender)
    if envelope_domain:
        spf = await evaluate_spf(resolver, client, envelope_domain)
        if spf.result is SpfResult.PASS and aligned(envelope_domain, author, policy.spf_alignment):
            why = f"SPF pass for {envelope_domain}, aligned with {author}"
            return DmarcVerdict(DmarcResult.PASS, author, disposition, why)
        spf_text = f"SPF {spf.result} for {envelope_domain or 'the null sender'}"
    else:
        spf_text = "no envelope sender domain for SPF"
    why = f"{spf_text}, no DKIM signature: nothing aligned with {author} (p={disposition})"
    return DmarcVerdict(DmarcResult.FAIL, author, disposition, why)


async def dmarc_refusal(
    resolver: dns.asyncresolver.Resolver, client: str, sender: str, message: bytes
) -> Refusal | None:
    """The 550 for a message its From: domain's DMARC policy rejects, else None.

    A message without one From: address, an IPv6 client or a DNS failure is let
    through (OpenDMARC's defaults would reject the first; the lab does not stage it).
    """
    author = author_domain(message)
    try:
        address = ipaddress.IPv4Address(client)
    except ValueError:
        return None
    if author is None:
        return None
    verdict = await evaluate_dmarc(resolver, address, sender, author)
    if not verdict.rejects:
        return None
    return Refusal(Check.DMARC_REJECT, S550_DMARC_REJECT(domain=author), verdict.explanation)


async def _policy(
    resolver: dns.asyncresolver.Resolver, author: str
) -> tuple[DmarcPolicy, str] | None:
    """The policy record for `author` and the domain it was found at."""
    for domain in dict.fromkeys([author, organizational_domain(author)]):
        for text in await _txt(resolver, f"_dmarc.{domain}"):
            policy = parse_dmarc(text)
            if policy is not None:
                return policy, domain
    return None


async def _txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    try:
        answer = await resolver.resolve(name + ".", "TXT", search=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    return [
        b"".join(rdata.strings).decode("utf-8", "replace")
        for rdata in answer
        if isinstance(rdata, TXT)
    ]
