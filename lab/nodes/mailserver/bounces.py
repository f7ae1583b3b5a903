"""Bounces of the relay's queue: who is told about failed recipients, and how.

A recipient fails for good when a server answers 5xx, or when the entry's
lifetime ends while it is still pending (`expiry_failures`: 5.4.7 with the
last error seen). `Bouncer.bounce` then tells the sender with one DSN (RFC
3464, `dsn.build_dsn`): straight into a local sender's mailbox, or through
the queue with the null sender "<>" to a remote one. A message from the null
sender never bounces (that is how bounce loops are avoided): its failures are
dropped, with an event saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from lab.addresses import domain_of
from lab.nodes.events import EventLog
from lab.nodes.mailserver.dsn import LOCAL_DIAGNOSTIC, FailedRecipient, build_dsn
from lab.nodes.mailserver.queue_entry import (
    NULL_SENDER,
    QueueEntry,
    RecipientFailure,
    is_null_sender,
)
from lab.nodes.mailserver.store import MailStore


class DsnQueue(Protocol):
    """How a DSN for a remote sender is queued (`OutboundQueue.enqueue`)."""

    async def __call__(self, *, sender: str, recipients: list[str], data: bytes) -> str:
        """Queue `data` durably and return its queue id."""
        ...


def expiry_failures(entry: QueueEntry) -> list[tuple[str, RecipientFailure]]:
    """What the bounce says for each recipient still pending when `entry` expires."""
    failures: list[tuple[str, RecipientFailure]] = []
    for recipient in entry.recipients:
        last = entry.failures.get(recipient)
        # The transient 4.x.y becomes permanent 5.x.y; the text stays the last error,
        # which is what tells the sender why (remote down, greylisted forever ...).
        failures.append(
            (
                recipient,
                RecipientFailure(
                    status="5.4.7",
                    diagnostic=last.diagnostic if last else "delivery time expired",
                    diagnostic_type=last.diagnostic_type if last else LOCAL_DIAGNOSTIC,
                    remote_mta=last.remote_mta if last else None,
                    stage=last.stage if last else None,
                ),
            )
        )
    return failures


class Bouncer:
    """Sends the DSNs of one relay.

    Args:
        hostname: the relay's name, the DSN's reporting MTA.
        local_domains: domains whose senders get their DSN in a local mailbox.
        store: the relay's mailboxes.
        events: where bounces, drops and DSNs are recorded.
        enqueue: queues a DSN for a remote sender.
    """

    def __init__(
        self,
        *,
        hostname: str,
        local_domains: set[str],
        store: MailStore,
        events: EventLog,
        enqueue: DsnQueue,
    ) -> None:
        self._hostname = hostname
        self._local_domains = local_domains
        self._store = store
        self._events = events
        self._enqueue = enqueue

    async def bounce(
        self,
        entry: QueueEntry,
        failures: list[tuple[str, RecipientFailure]],
        data: bytes,
        last_attempt: float,
    ) -> None:
        """Tell the sender about `failures` with one DSN, or drop them for a null sender."""
        sender = entry.sender
        if is_null_sender(sender):
            for recipient, failure in failures:
                self._events.emit(
                    "dropped",
                    queue_id=entry.id,
                    recipient=recipient,
                    status=failure.status,
                    diagnostic=failure.diagnostic,
                    reason="a message from the null sender (a bounce) is never bounced",
                )
            return
        dsn = build_dsn(
            reporting_mta=self._hostname,
            sender=sender,
            original=data,
            recipients=[
                FailedRecipient(
                    address=recipient,
                    status=failure.status,
                    diagnostic=failure.diagnostic,
                    diagnostic_type=failure.diagnostic_type,
                    remote_mta=failure.remote_mta,
                    last_attempt=datetime.fromtimestamp(last_attempt, UTC),
                    stage=failure.stage,
                )
                for recipient, failure in failures
            ],
            arrival_date=datetime.fromtimestamp(entry.queued_at, UTC),
            queue_id=entry.id,
        )
        for recipient, failure in failures:
            self._events.emit(
                "bounced",
                queue_id=entry.id,
                recipient=recipient,
                status=failure.status,
                diagnostic=failure.diagnostic,
                remote_mta=failure.remote_mta,
                dsn_to=sender,
            )
        await self._send_dsn(entry, sender, dsn)

    async def _send_dsn(self, entry: QueueEntry, sender: str, dsn: bytes) -> None:
        if domain_of(sender) in self._local_domains:
            try:
                stored = await self._store.deliver(sender, dsn)
            except Exception as error:
                self._events.emit("dsn-failed", queue_id=entry.id, dsn_to=sender, error=str(error))
                return
            self._events.emit("dsn", queue_id=entry.id, dsn_to=sender, stored_as=stored)
            return
        dsn_id = await self._enqueue(sender=NULL_SENDER, recipients=[sender], data=dsn)
        self._events.emit("dsn", queue_id=entry.id, dsn_to=sender, dsn_queue_id=dsn_id)
