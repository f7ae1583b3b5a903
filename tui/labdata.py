"""What the mailboxes and node logs of a running lab hold, as plain rows for the TUI.

Pure Python (no Textual): it reads only through the `Lab` interface
(`mailbox`, `events`, `topology`), so it works on either backend, and turns
raw messages and JSON-lines events into small frozen records the widgets
render. Bounces are parsed with the lab's own DSN reader; nothing here
decides what a failure means (that is the diagnosis engine's job).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import TYPE_CHECKING, Any

from lab.addresses import domain_of
from lab.nodes.config import MailServerConfig
from lab.scenario.model import MailServerNode

if TYPE_CHECKING:
    from lab.runtime.base import Lab


@dataclass(frozen=True)
class DsnField:
    """One recipient's group of a bounce (RFC 3464)."""

    recipient: str
    action: str
    status: str
    diagnostic: str | None
    remote_mta: str | None


@dataclass(frozen=True)
class MailItem:
    """A message sitting in a mailbox of a lab server."""

    node: str
    mailbox: str
    sender: str
    to: str
    subject: str
    message_id: str
    size: int
    bounce: tuple[DsnField, ...] | None = None  # set when the message is a DSN
    original_message_id: str | None = None  # the bounced message's id
    explanation: str = ""  # a DSN's human-readable part

    @property
    def is_bounce(self) -> bool:
        """A delivery status notification rather than a delivered message."""
        return self.bounce is not None


@dataclass(frozen=True)
class LogEntry:
    """One node event, summarised."""

    at: float  # seconds since the lab's first event
    clock: str  # the wall-clock time it happened, HH:MM:SS.mmm (local time)
    node: str
    event: str
    summary: str
    level: str  # "ok", "warn", "fail" or "info": how to colour it


def mailbox_addresses(lab: Lab) -> dict[str, list[str]]:
    """Mail server node -> the addresses whose mailboxes it may hold.

    The scenario's declared mailboxes plus every sender/recipient address of
    the client's settings that the node is responsible for (bounces go back to
    the sender, who may have no declared mailbox).
    """
    scenario = lab.topology.scenario
    settings = scenario.client[1].settings
    people = [settings.sender, *settings.to]
    found: dict[str, list[str]] = {}
    for name, plan in lab.topology.nodes.items():
        spec = scenario.nodes[name]
        if not isinstance(spec, MailServerNode) or not isinstance(plan.config, MailServerConfig):
            continue
        addresses = [address.lower() for address in spec.mailboxes]
        domains = set(plan.config.domains)
        for address in people:
            if domain_of(address) in domains and address.lower() not in addresses:
                addresses.append(address.lower())
        found[name] = addresses
    return found


def collect_mail(lab: Lab, extra: Mapping[str, Iterable[str]] | None = None) -> list[MailItem]:
    """Every message in every known mailbox, node by node, oldest first.

    Args:
        lab: a running lab.
        extra: node -> further addresses to look at (e.g. ones typed in the form).
    """
    addresses = mailbox_addresses(lab)
    for node, more in (extra or {}).items():
        if node in addresses:
            addresses[node].extend(a.lower() for a in more if a.lower() not in addresses[node])
    items: list[MailItem] = []
    for node, boxes in addresses.items():
        for address in boxes:
            try:
                messages = lab.mailbox(node, address)
            except (OSError, ValueError):  # a node that is down or a name it cannot store
                continue
            items.extend(read_message(node, address, raw) for raw in messages)
    return items


def read_message(node: str, mailbox: str, raw: bytes) -> MailItem:
    """A stored message as a `MailItem`; a DSN gets its per-recipient fields."""
    from lab.nodes.mailserver.dsn import parse_dsn

    headers = BytesHeaderParser(policy=default_policy).parsebytes(raw)
    bounce: tuple[DsnField, ...] | None = None
    original: str | None = None
    explanation = ""
    if headers.get_content_type() == "multipart/report":
        try:
            report = parse_dsn(raw)
        except ValueError:
            report = None
        if report is not None:
            bounce = tuple(
                DsnField(
                    recipient=group.recipient,
                    action=group.action,
                    status=group.status,
                    diagnostic=group.diagnostic_code,
                    remote_mta=group.remote_mta,
                )
                for group in report.recipients
            )
            original = report.original_message_id
            explanation = report.explanation
    return MailItem(
        node=node,
        mailbox=mailbox,
        sender=str(headers.get("From", "")),
        to=str(headers.get("To", "")),
        subject=str(headers.get("Subject", "")),
        message_id=str(headers.get("Message-ID", "")).strip(),
        size=len(raw),
        bounce=bounce,
        original_message_id=original,
        explanation=explanation,
    )


# --- node logs -------------------------------------------------------------------------------

# Events that only say a node started; noise next to the decisions a trainee reads.
_QUIET = {"ready", "started"}


def collect_logs(lab: Lab, *, include_quiet: bool = False) -> list[LogEntry]:
    """Every node's events merged in time order, summarised for people."""
    raw: list[dict[str, Any]] = []
    for node in lab.topology.nodes:
        try:
            raw.extend(lab.events(node))
        except OSError:
            continue
    raw.sort(key=lambda event: float(event.get("ts", 0.0)))
    origin = float(raw[0].get("ts", 0.0)) if raw else 0.0
    entries = []
    for event in raw:
        kind = str(event.get("event", "?"))
        if kind in _QUIET and not include_quiet:
            continue
        summary, level = summarize(event)
        entries.append(
            LogEntry(
                at=float(event.get("ts", origin)) - origin,
                clock=clock_time(float(event.get("ts", origin))),
                node=str(event.get("node", "?")),
                event=kind,
                summary=summary,
                level=level,
            )
        )
    return entries


def clock_time(timestamp: float) -> str:
    """`14:03:07.412`: when an event happened, as a person reads a log."""
    from datetime import datetime

    return datetime.fromtimestamp(timestamp).strftime("%H:%M:%S.%f")[:-3]


def _join(values: object) -> str:
    if isinstance(values, list | tuple):
        return ", ".join(str(value) for value in values)
    return str(values)


def summarize(event: Mapping[str, Any]) -> tuple[str, str]:
    """One line for an event, and its level; unknown events show their fields."""
    kind = event.get("event")
    get = event.get
    if kind == "query":
        rcode = str(get("rcode", ""))
        answers = get("answers") or []
        shown = "; ".join(str(answer).split(" IN ", 1)[-1] for answer in answers) or "no answer"
        level = "ok" if rcode == "NOERROR" and answers else "warn" if rcode == "NOERROR" else "fail"
        return f"{get('qtype')} {get('qname')} → {rcode}: {shown}", level
    if kind == "session":
        tls = " (TLS)" if get("tls") else ""
        return f"connection from {get('client')} on :{get('port')}{tls}", "info"
    if kind == "command":
        code = int(get("code") or 0)
        level = "ok" if code < 400 else "warn" if code < 500 else "fail"
        detail = f" [{get('decision')}]" if get("decision") else ""
        return f"{str(get('verb', '')).upper()} → {get('reply')}{detail}", level
    if kind == "auth":
        ok = bool(get("success"))
        why = f" ({get('reason')})" if get("reason") else ""
        verdict = "accepted" if ok else "refused"
        return f"AUTH {get('mechanism')} as {get('user')} {verdict}{why}", "ok" if ok else "fail"
    if kind == "queued":
        return f"queued {get('queue_id')} for {_join(get('recipients'))}", "info"
    if kind == "accepted":
        where = []
        if get("local"):
            where.append(f"local {_join(get('local'))}")
        if get("relayed"):
            where.append(f"relay {_join(get('relayed'))}")
        return f"accepted {get('message_id')} ({'; '.join(where) or 'no recipients'})", "ok"
    if kind == "route":
        hops = _join(get("hops") or []) or "no route"
        failure = f" — {get('failure')}" if get("failure") else ""
        return f"route {get('domain')} by {get('method')}: {hops}{failure}", (
            "fail" if get("failure") else "info"
        )
    if kind == "delivery-attempt":
        target = f"{get('host')}[{get('address')}]:{get('port')}"
        text = get("text") or "no reply"
        reply_code = get("code")
        level = "ok" if isinstance(reply_code, int) and reply_code < 400 else "warn"
        return f"attempt to {target} for {_join(get('recipients') or [])}: {text}", level
    if kind == "deferred":
        retry = get("next_attempt_in")
        when = f", retry in {retry:g} s" if isinstance(retry, int | float) else ", no retry left"
        return f"deferred {get('recipient')} {get('status')}: {get('reason')}{when}", "warn"
    if kind == "expired":
        return (
            f"expired after {get('attempts')} attempt(s): {_join(get('recipients') or [])}"
            f" — {get('last_error')}",
            "fail",
        )
    if kind == "delivered":
        return f"delivered {get('recipient')} via {get('host')}: {get('reply')}", "ok"
    if kind == "bounced":
        return (
            f"bounced {get('recipient')} {get('status')}: {get('diagnostic')}",
            "fail",
        )
    if kind == "dsn":
        return f"bounce (DSN) sent to {get('dsn_to')}", "warn"
    if kind == "stored":
        return f"stored {get('message_id')} in {get('mailbox')}", "ok"
    if kind == "removed":
        return f"removed {get('queue_id')} from the queue after {get('attempts')} attempt(s)", (
            "info"
        )
    fields = {k: v for k, v in event.items() if k not in ("ts", "node", "event")}
    return " ".join(f"{k}={v}" for k, v in fields.items()), "info"


__all__ = [
    "DsnField",
    "LogEntry",
    "MailItem",
    "collect_logs",
    "collect_mail",
    "mailbox_addresses",
    "read_message",
    "summarize",
]
