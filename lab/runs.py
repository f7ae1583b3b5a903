"""One run of a scenario: the mail program sends, then the message is followed to its fate.

The mail program only sees the hand-off to its server. What happened next
(delivered, bounced with a DSN, still queued) is read from the mailboxes the
lab's servers keep, by Message-ID, through the `Lab` interface alone.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from lab.addresses import domain_of, without_extension
from lab.nodes.config import MailServerConfig
from lab.scenario.model import Outcome, Stage

if TYPE_CHECKING:
    from lab.runtime.base import Lab
    from lab.scenario.model import MailSettings
    from lab.smtp.result import SendResult

POLL_INTERVAL = 0.02
# Seconds beyond the longest queue lifetime before calling a message deferred: the
# bounce still has to be written and read back, which on a loaded host takes seconds
# (CI runs saw a 2 s margin miss a bounce on both backends).
FOLLOW_MARGIN = 10.0


class Fate(StrEnum):
    """Where one recipient's copy ended up."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"
    PENDING = "pending"


@dataclass(frozen=True)
class RecipientFate:
    """One recipient's result; `status`/`diagnostic` come from the DSN when bounced."""

    address: str
    fate: Fate
    node: str | None = None
    status: str | None = None
    diagnostic: str | None = None
    remote_mta: str | None = None
    reply_code: int | None = None  # the remote server's reply, when the bounce quotes one
    reporting_mta: str | None = None  # the server that wrote the bounce
    bounce: bytes | None = field(default=None, repr=False, compare=False)  # the DSN itself


@dataclass(frozen=True)
class RunReport:
    """What the customer saw, and what became of the message."""

    scenario: str
    backend: str
    settings: MailSettings
    send: SendResult
    outcome: Outcome
    stage: Stage | None
    code: int | None
    enhanced: str | None
    text: str
    recipients: list[RecipientFate] = field(default_factory=list)
    bounce: bytes | None = None
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Plain data for `--json` and result files."""
        return {
            "scenario": self.scenario,
            "backend": self.backend,
            "outcome": str(self.outcome),
            "stage": str(self.stage) if self.stage else None,
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "duration": round(self.duration, 3),
            "settings": self.settings.model_dump(
                mode="json", by_alias=True, exclude={"auth": {"password"}}
            ),
            "client": self.send.to_json(),
            "recipients": [
                {
                    "address": r.address,
                    "fate": str(r.fate),
                    "node": r.node,
                    "status": r.status,
                    "diagnostic": r.diagnostic,
                    "remote_mta": r.remote_mta,
                }
                for r in self.recipients
            ],
        }


async def run_once(
    lab: Lab, settings: MailSettings | None = None, *, wait: bool = True
) -> RunReport:
    """Send once with `settings` (default: the scenario's) and follow the message.

    Args:
        lab: a running lab.
        settings: the mail program's settings; the scenario's when None.
        wait: follow the message until delivery, bounce or the end of the queue lifetime.
    """
    started = time.monotonic()
    settings = settings or lab.topology.scenario.client[1].settings
    send = await lab.send(settings)
    report = RunReport(
        scenario=lab.topology.scenario.id,
        backend=lab.backend,
        settings=settings,
        send=send,
        outcome=send.outcome,
        stage=send.stage,
        code=send.code,
        enhanced=send.enhanced,
        text=send.text,
    )
    if send.outcome is Outcome.DELIVERED and wait:
        report = await follow(lab, report)
    return replace(report, duration=time.monotonic() - started)


async def follow(lab: Lab, report: RunReport) -> RunReport:
    """Poll the mailboxes until every recipient is delivered or bounced, or time runs out.

    Returns the report with `recipients` filled in and the outcome refined to
    delivered, bounced (with the DSN's status and the remote reply) or deferred.
    """
    deadline = time.monotonic() + _follow_time(lab)
    accepted = [a for a in report.settings.to if a not in report.send.rejected_recipients]
    while True:
        fates = [_fate(lab, report, address) for address in accepted]
        if all(f.fate is not Fate.PENDING for f in fates) or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_INTERVAL)
    bounced = [f for f in fates if f.fate is Fate.BOUNCED]
    pending = [f for f in fates if f.fate is Fate.PENDING]
    if bounced:
        first = bounced[0]
        return replace(
            report,
            outcome=Outcome.BOUNCED,
            stage=Stage.DELIVERY,
            code=first.reply_code,
            enhanced=first.status,
            text=first.diagnostic or f"returned to the sender with status {first.status}",
            recipients=fates,
            bounce=first.bounce,
        )
    if pending:
        text = f"still queued for {', '.join(f.address for f in pending)}"
        return replace(
            report,
            outcome=Outcome.DEFERRED,
            stage=Stage.DELIVERY,
            code=None,
            enhanced=None,
            text=text,
            recipients=fates,
        )
    return replace(
        report,
        recipients=fates,
        text="delivered to " + ", ".join(f"{f.address} on {f.node}" for f in fates),
    )


def _follow_time(lab: Lab) -> float:
    lifetimes = [
        node.config.queue.lifetime
        for node in lab.topology.nodes.values()
        if isinstance(node.config, MailServerConfig) and node.config.queue is not None
    ]
    return max(lifetimes, default=0.0) + FOLLOW_MARGIN


def _fate(lab: Lab, report: RunReport, address: str) -> RecipientFate:
    message_id = report.send.message_id
    for node in mail_hosts(lab, address):
        config = lab.topology.nodes[node].config
        assert isinstance(config, MailServerConfig)
        # "bob+tag@" is stored in bob's mailbox where the server has a recipient delimiter.
        mailbox = without_extension(address, config.recipient_delimiter)
        for box in dict.fromkeys([address, mailbox]):
            if any(_message_id(raw) == message_id for raw in lab.mailbox(node, box)):
                return RecipientFate(address, Fate.DELIVERED, node)
    bounce = _find_bounce(lab, report.settings.sender, message_id, address)
    if bounce is not None:
        return bounce
    return RecipientFate(address, Fate.PENDING)


def _find_bounce(lab: Lab, sender: str, message_id: str, address: str) -> RecipientFate | None:
    from lab.nodes.mailserver.dsn import parse_dsn

    for node in mail_hosts(lab, sender):
        for raw in lab.mailbox(node, sender):
            try:
                dsn = parse_dsn(raw)
            except ValueError:
                continue
            if dsn.original_message_id != message_id:
                continue
            for recipient in dsn.recipients:
                if recipient.recipient.lower() == address.lower():
                    return RecipientFate(
                        address,
                        Fate.BOUNCED,
                        node,
                        status=recipient.status,
                        diagnostic=recipient.diagnostic_code,
                        remote_mta=recipient.remote_mta,
                        reply_code=recipient.reply_code,
                        reporting_mta=dsn.reporting_mta,
                        bounce=raw,
                    )
    return None


def mail_hosts(lab: Lab, address: str) -> list[str]:
    """Mail servers whose domains include the address's domain."""
    domain = domain_of(address)
    return [
        name
        for name, node in lab.topology.nodes.items()
        if isinstance(node.config, MailServerConfig) and domain in node.config.domains
    ]


def _message_id(raw: bytes) -> str | None:
    headers = BytesHeaderParser().parsebytes(raw)
    value = headers.get("Message-ID")
    return str(value).strip() if value else None
