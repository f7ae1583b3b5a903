"""Stage 7, data and delivery: does the server take the message, and does it arrive?

`send_data` asks `SendData` (DATA and the test message), concludes whether the
server took it, and ends the session. `follow` asks `FollowMessage` (on targets
that can follow the message through the relay's queue) and concludes whether it
was delivered, deferred on the way, or bounced. Sets the `data` and `delivery`
facts and the `outcome`.
"""

from __future__ import annotations

from typing import Any

from lab.addresses import domain_of, host_in_domain, mta_host
from lab.diagnosis.events import Probe, Status
from lab.diagnosis.hops import delivery_hop, route_summary
from lab.diagnosis.planner.asking import Asking, expect, polite
from lab.diagnosis.planner.facts import Findings, human_size, ms, reply_facts, size_facts
from lab.diagnosis.requests import (
    DeliveryResult,
    EndSession,
    FollowMessage,
    SendData,
    SessionResult,
)


def send_data(findings: Findings) -> Asking[bool]:
    """Send the message and end the session; True when the server took it."""
    data = expect((yield SendData()), SessionResult)
    delivered = _conclude_data(findings, data)
    yield EndSession(polite=polite(data))
    return delivered


def _conclude_data(findings: Findings, data: SessionResult) -> bool:
    facts = {"state": "ok", **reply_facts(data.reply), "ms": ms(data.duration)}
    findings.facts["data"] = facts
    title = "DATA"
    tried = f"Sent the test message ({human_size(findings.settings.size)})."
    if data.failure is not None:
        facts["error"] = data.failure.detail
        return findings.broke(
            Probe.DATA,
            facts,
            data,
            title=title,
            tried=tried,
            proves=(
                "The connection died while the message was being sent "
                f"({data.failure.detail}): the server, or something in the path, drops "
                "the session during the transfer."
            ),
        )
    if data.reply is not None and not data.reply.is_positive:
        return findings.refused(
            Probe.DATA,
            facts,
            data.reply,
            data,
            title=title,
            tried=tried,
            proves=f"The server refused the message: {data.reply}.",
        )
    if "problem" not in findings.facts:
        findings.facts["outcome"] = "accepted"
    findings.emit(
        Probe.DATA,
        Status.OK,
        title,
        tried,
        f"The server took the message: {data.reply}.",
        transcript=data.transcript,
        duration=data.duration,
    )
    return True


def follow(findings: Findings) -> Asking[None]:
    """Follow the accepted message to its destination."""
    delivery = expect((yield FollowMessage()), DeliveryResult)
    facts = _delivery_facts(delivery)
    findings.facts["delivery"] = facts
    bounced = [r for r in delivery.recipients if r.fate == "bounced"]
    first = bounced[0] if bounced else None
    title = "Follow the message"
    tried = "Followed the accepted message through the relay's queue to its destination."
    retries = ""
    if delivery.deferrals:
        shown = "; ".join(f"{d.reason}" for d in delivery.deferrals[:3])
        retries = f" On the way it was deferred {len(delivery.deferrals)} time(s): {shown}."
    if delivery.state == "delivered":
        findings.facts["outcome"] = "delivered" if "problem" not in findings.facts else "failed"
        status = Status.WARN if delivery.deferrals or delivery.failovers else Status.OK
        went_past = ""
        if delivery.failovers:
            went_past = f" A server went past a host it could not reach: {delivery.failovers[0]}."
        proves = f"The message arrived: {delivery.text}.{retries}{went_past}"
        findings.emit(
            Probe.DELIVERY,
            status,
            title,
            tried,
            proves,
            transcript=delivery.transcript,
            duration=delivery.duration,
        )
    elif delivery.state == "bounced" and first is not None:
        why = "the queue lifetime ran out" if facts["expired"] else "a permanent failure"
        if facts["accepted_then_bounced"]:
            why += (
                ": the next server took it with 250 at RCPT and bounced it afterwards, "
                "accept-then-bounce as a catch-all does"
            )
        findings.fail(
            Probe.DELIVERY,
            "expired" if facts["expired"] else "bounce",
            first.diagnostic or f"bounced with {first.status}",
            title=title,
            tried=tried,
            proves=(
                f"The server accepted the message, but it came back to the sender ({why}): "
                f"status {first.status}, {first.diagnostic or 'no diagnostic'}.{retries}"
            ),
            code=first.reply_code,
            enhanced=first.status,
            transcript=delivery.transcript,
            duration=delivery.duration,
        )
        findings.facts["outcome"] = "bounced"
    elif delivery.state == "deferred":
        last = delivery.deferrals[-1] if delivery.deferrals else None
        findings.fail(
            Probe.DELIVERY,
            "deferred",
            last.reason if last else delivery.text,
            title=title,
            tried=tried,
            proves=f"The message is still queued: {delivery.text}.{retries}",
            enhanced=last.status if last else None,
            transcript=delivery.transcript,
            duration=delivery.duration,
        )
        findings.facts["outcome"] = "deferred"
    else:
        findings.facts["outcome"] = "accepted"
        proves = f"What became of the message is unknown: {delivery.text}"
        findings.emit(
            Probe.DELIVERY,
            Status.INFO,
            title,
            tried,
            proves,
            transcript=delivery.transcript,
            duration=delivery.duration,
        )


def _delivery_facts(delivery: DeliveryResult) -> dict[str, Any]:
    """The `delivery` facts: the fate of each recipient, the deferrals, the first bounce."""
    statuses = [d.status for d in delivery.deferrals if d.status]
    bounced = [r for r in delivery.recipients if r.fate == "bounced"]
    first = bounced[0] if bounced else None
    return {
        "state": delivery.state,
        "attempts": delivery.attempts,
        "deferrals": [
            {"recipient": d.recipient, "status": d.status, "reason": d.reason}
            for d in delivery.deferrals
        ],
        "deferred": bool(delivery.deferrals),
        "deferral_statuses": statuses,
        "deferral_text": " | ".join(d.reason for d in delivery.deferrals),
        "deferral_reasons": " | ".join(dict.fromkeys(d.reason for d in delivery.deferrals)),
        "last_error": (
            delivery.deferrals[-1].reason
            if delivery.deferrals
            else " ".join((first.diagnostic or "").split())
            if first
            else ""
        ),
        "expired": delivery.expired or _gave_up_retrying(bounced),
        "route_failure": delivery.route_failure,
        "recipients": [
            {
                "address": r.address,
                "fate": r.fate,
                "node": r.node,
                "status": r.status,
                "diagnostic": r.diagnostic,
            }
            for r in delivery.recipients
        ],
        "status": first.status if first else None,
        "diagnostic": first.diagnostic if first else None,
        "code": first.reply_code if first else None,
        "remote_mta": first.remote_mta if first else None,
        "bounced_addresses": [r.address for r in bounced],
        # The next server's own limit: a size bounce is judged against it, not the provider's.
        "size_limit": delivery.remote_size_limit,
        **size_facts(delivery.remote_size_limit),
        # Taken with a 250 by the next server, bounced all the same: accept-then-bounce.
        "accepted_then_bounced": any(r.address.lower() in delivery.handed_over for r in bounced),
        "remote_address": delivery.remote_address,
        "text": delivery.text,
        "failovers": list(delivery.failovers),
        "failover_text": " | ".join(delivery.failovers),
        "queued_on": delivery.queued_on,
        "reporting_mta": first.reporting_mta if first else None,
        # A bounce written by a server of the recipient's own domain: it took the message
        # first and refused it later (a backup MX, a catch-all gateway).
        "bounced_by_recipient_side": bool(
            first
            and first.reporting_mta
            and host_in_domain(mta_host(first.reporting_mta), domain_of(first.address))
        ),
        # ... because a server further on refused it (a backup MX handing over to the
        # primary), not on its own (a catch-all gateway that learns its mailboxes late).
        "refused_further_on": bool(
            first
            and first.remote_mta
            and first.reporting_mta
            and mta_host(first.remote_mta) != mta_host(first.reporting_mta)
        ),
        "routes": route_summary(delivery.routes),
        "hop": delivery_hop(delivery),
    }


def _gave_up_retrying(bounced: list[Any]) -> bool:
    """A bounce whose status is transient (4.x.x) reports retries that ran out of time.

    RFC 3464 `Action: failed` with the last temporary status is how Postfix returns
    an expired message ("status 4.4.1, connect to ...: Connection timed out").
    """
    return any((recipient.status or "").startswith("4") for recipient in bounced)
