"""Stage 8, the relay audit: does the server relay for anyone?

Asked only when the session relayed without a login: the mail program sent no
AUTH, yet the server took the message for a recipient whose domain it does not
receive mail for (the domain's MX names another host). That is right for a
client on a network the server trusts, and an open relay when it does so for
everyone; only a look from outside tells which. `relay_audit` asks
`AuditRelay` (a host outside the customer's networks, no login: EHLO, MAIL,
RCPT to that foreign domain, RSET, QUIT; never DATA, so nothing is sent
anywhere) and concludes. Sets the `relay` facts; an open relay is a WARN step,
not a `problem`: the customer's mail still goes through.
"""

from __future__ import annotations

from typing import Any

from lab.addresses import domain_of
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings, ms, reply_facts
from lab.diagnosis.requests import AuditRelay, AuditResult

# Where mail servers take mail from other servers: an auditor tries this port.
RELAY_PORT = 25
AUDIT_HELO = "relay-audit.invalid"
AUDIT_LOCAL_PART = "relay-audit"


def relay_audit(findings: Findings, address: str) -> Asking[None]:
    """Try to relay from outside when the session relayed without a login."""
    recipient = foreign_recipient(findings, address)
    if recipient is None:
        return
    sender = f"{AUDIT_LOCAL_PART}@{domain_of(recipient)}"
    request = AuditRelay(address, RELAY_PORT, AUDIT_HELO, sender, recipient)
    _conclude(findings, request, expect((yield request), AuditResult))


def foreign_recipient(findings: Findings, address: str) -> str | None:
    """The first recipient the server relayed for without a login, if the audit applies.

    It applies on targets with an outside vantage point, when no login was used and the
    server took the message, for a recipient whose domain's mail goes to another host.
    """
    facts = findings.facts
    if not findings.can_audit or findings.settings.auth is not None:
        return None
    if (facts.get("data") or {}).get("state") != "ok" or "problem" in facts:
        return None
    server = findings.settings.server.lower().rstrip(".")
    domains = {d["domain"]: d for d in (facts.get("resolve") or {}).get("recipients", [])}
    for recipient in findings.settings.to:
        lookup: dict[str, Any] = domains.get(domain_of(recipient), {})
        hosts = lookup.get("mx") or []
        fallback = lookup.get("a_fallback") or []
        if lookup.get("status") == "ok" and server not in hosts and address not in hosts:
            return recipient
        if lookup.get("status") == "no-mx" and address not in fallback:
            return recipient
    return None


def _conclude(findings: Findings, request: AuditRelay, result: AuditResult) -> None:
    facts: dict[str, Any] = {
        "source": result.source,
        "port": request.port,
        "sender": request.sender,
        "recipient": request.recipient,
        "mail": reply_facts(result.mail),
        "rcpt": reply_facts(result.rcpt),
        "ms": ms(result.duration),
        "open_relay": None,
    }
    findings.facts["relay"] = facts
    title = "Relay audit from outside"
    tried = (
        f"From {result.source}, outside the customer's networks and without a login: "
        f"MAIL FROM:<{request.sender}>, RCPT TO:<{request.recipient}> on port {request.port}, "
        "then RSET (no DATA: nothing was sent)."
    )
    rcpt = result.rcpt
    if result.failure is not None or rcpt is None:
        why = result.failure.detail if result.failure else f"MAIL FROM answered {result.mail}"
        facts["error"] = why
        status = Status.INFO
        proves = (
            f"The audit could not get as far as RCPT ({why}), so whether the server relays "
            "for strangers is not known."
        )
    elif rcpt.is_positive:
        facts["open_relay"] = True
        status = Status.WARN
        proves = (
            f"The server accepted a recipient at a foreign domain from a stranger without a "
            f"login ({rcpt}): it is an open relay. Anyone on the internet can send spam "
            "through it, and its address will end up on blocklists."
        )
    else:
        facts["open_relay"] = False
        status = Status.OK
        proves = (
            f"The server refuses to relay for strangers ({rcpt}): it relayed the customer's "
            "message without a login because it trusts the customer's network or address."
        )
    findings.emit(
        Probe.RELAY,
        status,
        title,
        tried,
        proves,
        transcript=result.transcript,
        duration=result.duration,
    )
