"""Stage 1, name resolution: where the server is, and where the domains take mail.

Asks `LookupDns` (the server's A record and PTR, the MX of the sender's and
recipients' domains) and concludes whether there is an address to connect to;
a recipient domain that cannot receive mail is a warning, not a stop. Sets the
`resolve` facts. After a refusal that names the client's address and speaks of
its name, `check_client_rdns` asks `CheckReverseDns` and adds what it found to
the `problem`.
"""

from __future__ import annotations

import re
from typing import Any

from lab.addresses import domain_of
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings
from lab.diagnosis.requests import (
    CheckReverseDns,
    DnsResult,
    DomainLookup,
    LookupDns,
    ReverseResult,
)

# A refusal naming the client's address and speaking of its name (Postfix, Exchange, Gmail).
_BRACKETED_IP = re.compile(r"\[(\d{1,3}(?:\.\d{1,3}){3})\]")
_RDNS_WORDS = re.compile(r"hostname|reverse|\bptr\b|rdns|fcrdns", re.IGNORECASE)


def resolve(findings: Findings) -> Asking[str | None]:
    """Look the names up; the address to connect to, or None when there is none."""
    settings = findings.settings
    recipients = tuple(dict.fromkeys(domain_of(address) for address in settings.to))
    dns = expect(
        (yield LookupDns(settings.server, recipients, domain_of(settings.sender))), DnsResult
    )
    return _conclude(findings, dns)


def _conclude(findings: Findings, dns: DnsResult) -> str | None:
    server = dns.server
    domains = [_domain_facts(lookup) for lookup in dns.recipients]
    facts: dict[str, Any] = {
        "server": server.name,
        "literal": server.status == "literal",
        "status": server.status,
        "addresses": list(server.addresses),
        "address": server.addresses[0] if server.addresses else None,
        "error": server.error,
        "ms": server.ms,
        "ptr": dns.ptr,
        "sender": _domain_facts(dns.sender) if dns.sender else None,
        "recipients": domains,
    }
    for status, key in (
        ("nxdomain", "nxdomain"),
        ("null-mx", "null_mx"),
        ("no-mx", "no_mx"),
        ("temporary", "temporary"),
        ("no-host", "no_host"),
    ):
        matching = [d["domain"] for d in domains if d["status"] == status]
        facts[f"{key}_domains"] = matching
        facts[f"any_recipient_{key}"] = bool(matching)
    findings.facts["resolve"] = facts
    title = f"Resolve {server.name}"
    notes = _domain_notes(dns)
    if server.status == "literal":
        tried = f"Nothing to look up: {server.name} is an IP address."
        if dns.recipients:
            tried += " Looked up where the recipients' domains receive mail."
        proves = f"The mail program connects to {server.name} directly. {notes}".strip()
        status = Status.WARN if _domain_trouble(dns) else Status.OK
        findings.emit(Probe.RESOLVE, status, title, tried, proves, duration=dns.duration)
        return server.addresses[0] if server.addresses else server.name.strip("[]")
    looked_up = ", ".join(d.domain for d in dns.recipients) or "the recipients' domains"
    tried = f"Looked up the A record of {server.name}, and the MX records of {looked_up}."
    if server.status == "ok" and server.addresses:
        shown = ", ".join(server.addresses)
        proves = f"{server.name} exists and points to {shown} ({server.ms:.0f} ms). {notes}"
        status = Status.WARN if _domain_trouble(dns) else Status.OK
        findings.emit(Probe.RESOLVE, status, title, tried, proves.strip(), duration=dns.duration)
        return server.addresses[0]
    if server.status == "nxdomain":
        proves = (
            f"{server.name} does not exist in DNS (NXDOMAIN): the mail program cannot find "
            "its server at all. The server name is most likely mistyped."
        )
        kind = "nxdomain"
    elif server.status == "nodata":
        proves = (
            f"{server.name} exists in DNS but has no address (no A record): "
            "there is nothing to connect to."
        )
        kind = "nodata"
    else:
        proves = (
            f"DNS could not answer for {server.name} ({server.error}): a temporary failure "
            "of the resolver or of the domain's name servers. The name may well be right."
        )
        kind = "temporary"
    findings.fail(
        Probe.RESOLVE,
        kind,
        server.error or proves,
        title=title,
        tried=tried,
        proves=proves,
        duration=dns.duration,
    )
    return None


def _domain_facts(lookup: DomainLookup) -> dict[str, Any]:
    return {
        "domain": lookup.domain,
        "status": lookup.status,
        "mx": list(lookup.mx),
        "a_fallback": list(lookup.a_fallback),
        "error": lookup.error,
    }


def _domain_trouble(dns: DnsResult) -> bool:
    lookups = [*dns.recipients, *([dns.sender] if dns.sender else [])]
    return any(lookup.status not in ("ok", "no-mx") for lookup in lookups)


def _domain_notes(dns: DnsResult) -> str:
    notes: list[str] = []
    for lookup in dns.recipients:
        if lookup.status == "ok":
            notes.append(f"Mail for {lookup.domain} goes to {', '.join(lookup.mx)}.")
        elif lookup.status == "no-mx":
            notes.append(
                f"{lookup.domain} has no MX record: senders fall back to its A record "
                f"({', '.join(lookup.a_fallback)})."
            )
        elif lookup.status == "null-mx":
            notes.append(f"{lookup.domain} publishes a null MX: it accepts no mail at all.")
        elif lookup.status == "nxdomain":
            notes.append(f"The recipient domain {lookup.domain} does not exist (NXDOMAIN).")
        elif lookup.status == "no-host":
            notes.append(f"{lookup.domain} has neither an MX nor an A record.")
        else:
            notes.append(f"DNS could not answer for {lookup.domain} ({lookup.error}).")
    sender = dns.sender
    if sender is not None and sender.status in ("nxdomain", "no-host"):
        notes.append(f"The sender's domain {sender.domain} cannot receive replies or bounces.")
    return " ".join(notes)


# --- reverse DNS of a refused client -------------------------------------------------------------


def check_client_rdns(findings: Findings) -> Asking[None]:
    """A refusal for reverse DNS names the client's address: look it up as an expert would."""
    problem = findings.problem
    if problem is None:
        return
    text = f"{problem.get('reply') or ''} {problem.get('text') or ''}"
    enhanced = str(problem.get("enhanced") or "")
    found = _BRACKETED_IP.search(text)
    if found is None or not (enhanced.endswith(".7.25") or _RDNS_WORDS.search(text)):
        return
    address = found.group(1)
    result = expect((yield CheckReverseDns(address)), ReverseResult)
    if result.ptr is None:
        status = "unknown" if result.error else "missing"
    elif address in result.forward:
        status = "confirmed"
    else:
        status = "mismatch"
    problem.update(
        {
            "client_address": address,
            "client_ptr": result.ptr,
            "client_ptr_forward": list(result.forward),
            "client_ptr_status": status,
        }
    )
    tried = f"Looked up the PTR record of {address} (the address the server refused)"
    if result.ptr:
        tried += f", then the A record of {result.ptr}"
    proves = {
        "missing": f"{address} has no PTR record: servers that demand reverse DNS refuse it.",
        "mismatch": (
            f"{address} is named {result.ptr}, but {result.ptr} points to "
            f"{', '.join(result.forward) or 'nothing'}: the reverse DNS is not confirmed "
            "by the forward lookup (FCrDNS fails)."
        ),
        "confirmed": (
            f"{address} is named {result.ptr} and that name points back to it: reverse DNS "
            "is fine from here; the server may see another address or stale data."
        ),
        "unknown": f"The reverse lookup of {address} failed: {result.error}.",
    }[status]
    findings.emit(
        Probe.RESOLVE,
        Status.FAIL if status in ("missing", "mismatch") else Status.INFO,
        f"Reverse DNS of {address}",
        tried + ".",
        proves,
        evidence={
            "address": address,
            "ptr": result.ptr,
            "forward": list(result.forward),
            "status": status,
        },
        duration=result.duration,
    )
