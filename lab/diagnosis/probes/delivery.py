"""After the hand-off: what became of the accepted message.

`follow` answers `FollowMessage`: it hands the main session's outcome to the
target, which follows the message through the relays (lab targets only), and
`delivery_from` turns the followed run and the relays' events into the
planner's `DeliveryResult`: each recipient's fate, the deferrals on the way,
and the relay's own attempts as a transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lab.addresses import domain_of
from lab.diagnosis.probes.context import ProbeContext
from lab.diagnosis.probes.session import MainSession
from lab.diagnosis.requests import Deferral, DeliveryResult, RecipientOutcome, RouteTaken
from lab.scenario.model import Outcome
from lab.smtp.transcript import Direction, TranscriptLine

if TYPE_CHECKING:
    from lab.runs import RunReport

# The next server's EHLO line announcing its limit (RFC 1870), as the relay recorded it;
# Postfix, which does not even try a message over it, names it in its own bounce.
_SIZE_LINE = re.compile(r"^250[- ]SIZE\s+(\d+)\s*$", re.IGNORECASE)
_SIZE_IN_BOUNCE = re.compile(r"exceeds size limit (\d+) of server", re.IGNORECASE)

# A relay's log can lag behind the mailbox: a Postfix node's lines reach the engine through
# docker's container log, which is written asynchronously. How long to wait for them.
SETTLE_TIME = 10.0
SETTLE_POLL = 0.1
_SETTLED = frozenset({"delivered", "bounced", "expired"})


async def follow(context: ProbeContext, main: MainSession) -> DeliveryResult:
    """Ask the target what became of the accepted message."""
    start = context.clock()
    report = await context.target.follow(context.settings, main.handoff())
    events = context.target.delivery_events(main.message_id)
    if report is not None and report.outcome in (Outcome.DELIVERED, Outcome.BOUNCED):
        deadline = context.clock() + SETTLE_TIME
        while unsettled(events) and context.clock() < deadline:
            await asyncio.sleep(SETTLE_POLL)
            events = context.target.delivery_events(main.message_id)
    if main.address is not None and not any(e.get("event") == "route" for e in events):
        # A server that logs no route decisions (Postfix): its configured route instead.
        domains = dict.fromkeys(domain_of(address) for address in context.settings.to)
        configured = (context.target.configured_route(main.address, d) for d in domains)
        events = [*(route for route in configured if route is not None), *events]
    return delivery_from(report, events, duration=context.clock() - start)


def unsettled(events: Sequence[dict[str, Any]]) -> set[str]:
    """Queue entries that logged taking the message and not yet what became of it."""
    queued = {str(e.get("queue_id")) for e in events if e.get("event") == "queued"}
    done = {str(e.get("queue_id")) for e in events if e.get("event") in _SETTLED}
    return queued - done


def delivery_from(
    report: RunReport | None, events: Sequence[dict[str, Any]], *, duration: float = 0.0
) -> DeliveryResult:
    """The planner's delivery result from a followed run and the relays' events."""
    if report is None:
        return DeliveryResult(
            "unknown", text="this target cannot follow messages", duration=duration
        )
    state = {
        Outcome.DELIVERED: "delivered",
        Outcome.BOUNCED: "bounced",
        Outcome.DEFERRED: "deferred",
    }.get(report.outcome, "unknown")
    recipients = tuple(
        RecipientOutcome(
            address=fate.address,
            fate=str(fate.fate),
            node=fate.node,
            status=fate.status,
            diagnostic=fate.diagnostic,
            reply_code=fate.reply_code,
            remote_mta=fate.remote_mta,
            reporting_mta=fate.reporting_mta,
        )
        for fate in report.recipients
    )
    deferrals = tuple(
        Deferral(
            recipient=str(event.get("recipient") or ""),
            status=event.get("status"),
            reason=str(event.get("reason") or ""),
            attempt=int(event.get("attempt") or 0),
        )
        for event in events
        if event.get("event") == "deferred"
    )
    attempts = [event for event in events if event.get("event") == "delivery-attempt"]
    transcript: list[TranscriptLine] = []
    for number, attempt in enumerate(attempts, 1):
        where = f"{attempt.get('host')}[{attempt.get('address')}]:{attempt.get('port')}"
        transcript.append(TranscriptLine(0.0, Direction.NOTE, f"relay attempt {number} to {where}"))
        for line in attempt.get("transcript") or []:
            with contextlib.suppress(KeyError, ValueError, TypeError):
                transcript.append(
                    TranscriptLine(float(line["at"]), Direction(line["dir"]), str(line["text"]))
                )
    route_failure = next(
        (str(e["failure"]) for e in events if e.get("event") == "route" and e.get("failure")),
        None,
    )
    return DeliveryResult(
        state=state,
        recipients=recipients,
        deferrals=deferrals,
        attempts=len(attempts),
        expired=any(event.get("event") == "expired" for event in events),
        route_failure=route_failure,
        text=report.text,
        remote_address=str(attempts[-1].get("address")) if attempts else None,
        remote_size_limit=_announced_size(transcript, recipients),
        handed_over=tuple(
            dict.fromkeys(
                str(event.get("recipient")).lower()
                for event in events
                if event.get("event") == "delivered" and event.get("recipient")
            )
        ),
        transcript=tuple(transcript),
        duration=duration,
        failovers=failovers(events),
        queued_on=sum(1 for event in events if event.get("event") == "queued"),
        routes=routes_taken(events),
    )


# A connection that failed before any recipient was decided (connect error, lost, timeout).
_CONNECTION_STATUSES = ("4.4.1", "4.4.2")
# After these a queue entry's failed connections were not gone past: it waits or is done.
_ATTEMPT_ENDS = frozenset({"deferred", "delivered", "bounced", "expired"})


def failovers(events: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The failed connections a server went past to its next host in the same attempt: a
    failed `delivery-attempt` followed by another one of the same queue entry before the
    entry was deferred (then the failure was waited out, not gone past)."""
    pending: dict[str, list[str]] = {}
    found: list[str] = []
    for event in events:
        queue_id = str(event.get("queue_id") or "")
        kind = event.get("event")
        if kind == "delivery-attempt":
            found += pending.pop(queue_id, [])
            if not event.get("results") and event.get("enhanced") in _CONNECTION_STATUSES:
                pending.setdefault(queue_id, []).append(str(event.get("text") or ""))
        elif kind in _ATTEMPT_ENDS:
            pending.pop(queue_id, None)
    return tuple(dict.fromkeys(found))


def _announced_size(
    transcript: Sequence[TranscriptLine], recipients: Sequence[RecipientOutcome]
) -> int | None:
    """The last SIZE limit a next server announced in the relay's attempts (0: no limit),
    else the one a bounce names."""
    sizes = [
        int(match.group(1))
        for line in transcript
        if line.direction is Direction.SERVER and (match := _SIZE_LINE.match(line.text))
    ]
    sizes += [
        int(match.group(1))
        for recipient in recipients
        if (match := _SIZE_IN_BOUNCE.search(recipient.diagnostic or ""))
    ]
    return sizes[-1] if sizes and sizes[-1] > 0 else None


def routes_taken(events: Sequence[dict[str, Any]]) -> tuple[RouteTaken, ...]:
    """Each relay's route decision per domain, with the attempts it then made, oldest first.

    Events carry the `node` that logged them; an attempt belongs to the route of the same
    node and queue entry whose domain its recipients are in.
    """
    routes: list[RouteTaken] = []
    for event in events:
        if event.get("event") != "route":
            continue
        node, domain = event.get("node"), str(event.get("domain") or "")
        tried = tuple(
            f"{attempt.get('host')}[{attempt.get('address')}]:{attempt.get('port')}"
            for attempt in events
            if attempt.get("event") == "delivery-attempt"
            and attempt.get("node") == node
            and attempt.get("queue_id") == event.get("queue_id")
            and any(domain_of(str(r)) == domain for r in attempt.get("recipients") or [])
        )
        routes.append(
            RouteTaken(
                node=str(node) if node else None,
                domain=domain,
                method=str(event.get("method") or ""),
                pattern=event.get("pattern"),
                hops=tuple(str(hop) for hop in event.get("hops") or []),
                failure=event.get("failure"),
                tried=tried,
            )
        )
    return tuple(routes)
