"""The relay's outbound queue: a scheduler in lab time that attempts every queued message.

Every accepted message for a remote domain becomes a queue entry
(`queue_entry.QueueEntry`), durable on disk before `enqueue` returns
(`queue_files.py`). One scheduler task sleeps until the next entry is due (or
`enqueue` wakes it) and starts an attempt per due entry; nothing polls. An
attempt groups the pending recipients by domain, routes each domain
(`routing.next_hops`) and delivers it (`delivery.Deliverer`); 2xx recipients
are done, 5xx ones bounce now, 4xx and unreachable ones wait for the next
retry. Retries follow `QueueConfig.retry` (delays between attempts, in lab
seconds, the last one repeating), each counted from the start of the previous
attempt so that slow attempts do not stretch the schedule.
`QueueConfig.lifetime` after the entry was queued it expires: what is still
pending bounces with 5.4.7 and the last error seen for that recipient.
Bounces and their DSNs are `bounces.py`'s business.

Delivery is at-least-once from here: a crash (or `stop`) after a remote server
said 250 but before the entry was removed makes the restarted relay deliver
again, as real MTAs do. A lab mail server stores one copy per Message-ID and
mailbox (`once.py`), so across the lab every acknowledged message lands exactly
once (`tests/nodes/test_relay_crash.py` kills the relay with SIGKILL to prove it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from email.parser import BytesHeaderParser
from typing import TYPE_CHECKING

from lab.addresses import domain_of
from lab.nodes.config import QueueConfig
from lab.nodes.mailserver.bounces import Bouncer, expiry_failures
from lab.nodes.mailserver.delivery import (
    Deliverer,
    Outcome,
    RecipientResult,
    command_timeout_for,
)
from lab.nodes.mailserver.dsn import LOCAL_DIAGNOSTIC
from lab.nodes.mailserver.queue_entry import (
    QueueEntry,
    QueueEntryView,
    RecipientFailure,
    is_null_sender,
)
from lab.nodes.mailserver.queue_files import QUEUE_DIR, QueueFiles, new_queue_id
from lab.nodes.mailserver.routing import next_hops
from lab.nodes.resolver import make_resolver

if TYPE_CHECKING:
    from lab.net import Connector
    from lab.nodes.config import MailServerConfig
    from lab.nodes.events import EventLog
    from lab.nodes.mailserver.store import MailStore

# A relay with a burst of queued mail should not open hundreds of connections at once.
MAX_CONCURRENT_ATTEMPTS = 32
# The schedule when a config has no queue section (topology always writes one for a
# relay): a relay built by hand still retries instead of failing on the first 4xx.
FALLBACK_QUEUE = QueueConfig(retry=[60.0], lifetime=3600.0)


def retry_delay(schedule: list[float], attempts: int) -> float:
    """The wait after attempt number `attempts` (1-based); the last delay repeats."""
    if not schedule:
        return float("inf")  # no retries at all: the entry waits for its expiry
    return schedule[min(attempts, len(schedule)) - 1]


class OutboundQueue:
    """The relay's persistent outbound queue (see the module docstring)."""

    def __init__(
        self,
        config: MailServerConfig,
        *,
        store: MailStore,
        connector: Connector,
        events: EventLog,
    ) -> None:
        self.config = config
        self.directory = config.data_dir / QUEUE_DIR
        self._files = QueueFiles(self.directory, events)
        self._schedule = config.queue or FALLBACK_QUEUE
        self._store = store
        self._events = events
        self._local_domains = {domain.lower() for domain in config.domains}
        self._bouncer = Bouncer(
            hostname=config.hostname,
            local_domains=self._local_domains,
            store=store,
            events=events,
            enqueue=self.enqueue,
        )
        self._resolver = make_resolver(config.resolver) if config.resolver else None
        connect_timeout = self._schedule.connect_timeout
        self._deliverer = Deliverer(
            hostname=config.hostname,
            connector=connector,
            events=events,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout_for(connect_timeout),
            ca_file=config.ca_file,
        )
        self._entries: dict[str, QueueEntry] = {}
        self._running: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self._limit = asyncio.Semaphore(MAX_CONCURRENT_ATTEMPTS)
        self._scheduler: asyncio.Task[None] | None = None
        # Set while nothing is queued: `wait_idle` waits on it instead of polling.
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def _retry(self) -> list[float]:
        return self._schedule.retry

    @property
    def _lifetime(self) -> float:
        return self._schedule.lifetime

    # --- public API --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the entries a previous run left on disk and start the scheduler."""
        if self._scheduler is not None:
            return
        entries = await asyncio.to_thread(self._files.load)
        for entry in entries:
            self._entries[entry.id] = entry
        if entries:
            self._idle.clear()
            self._events.emit(
                "queue-loaded", entries=len(entries), queue_ids=[e.id for e in entries]
            )
        self._scheduler = asyncio.create_task(self._run(), name=f"queue-{self.config.name}")

    async def stop(self) -> None:
        """Cancel the scheduler and running attempts; every entry stays on disk."""
        tasks = list(self._running.values())
        if self._scheduler is not None:
            tasks.append(self._scheduler)
            self._scheduler = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    async def enqueue(
        self,
        *,
        sender: str,
        recipients: list[str],
        data: bytes,
        client_address: str | None = None,
        helo: str | None = None,
        authenticated_as: str | None = None,
    ) -> str:
        """Queue a message; it is on disk (fsynced) when this returns the queue id."""
        if not recipients:
            raise ValueError("a queue entry needs at least one recipient")
        now = time.time()
        entry = QueueEntry(
            id=new_queue_id(),
            sender=sender,
            recipients=list(dict.fromkeys(recipients)),
            queued_at=now,
            expires_at=now + self._lifetime,
            next_attempt_at=now,
            message_id=_message_id(data),
            client_address=client_address,
            helo=helo,
            authenticated_as=authenticated_as,
        )
        await asyncio.to_thread(self._files.write_new, entry, data)
        self._entries[entry.id] = entry
        self._idle.clear()
        self._events.emit(
            "queued",
            queue_id=entry.id,
            message_id=entry.message_id,
            sender=sender,
            recipients=entry.recipients,
            size=len(data),
            client_address=client_address,
            authenticated_as=authenticated_as,
        )
        self._wake.set()
        return entry.id

    def flush(self, domain: str | None = None) -> int:
        """Attempt every waiting entry now (Postfix's `postqueue -f`), or only those with a
        recipient in `domain` (`postqueue -s`, ETRN); returns how many.

        Expiry times stay as they were: flushing never extends a message's life.
        """
        now = time.time()
        waiting = [
            e
            for e in self._entries.values()
            if e.id not in self._running
            and (domain is None or any(domain_of(r) == domain.lower() for r in e.recipients))
        ]
        for entry in waiting:
            entry.next_attempt_at = min(entry.next_attempt_at, now)
        self._wake.set()
        return len(waiting)

    def snapshot(self) -> list[QueueEntryView]:
        """Every queued entry, oldest first."""
        entries = sorted(self._entries.values(), key=lambda e: (e.queued_at, e.id))
        return [entry.view(entry.id in self._running) for entry in entries]

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Until the queue is empty (tests and the lab runner use it to follow a message).

        Raises:
            TimeoutError: entries are still queued after `timeout` seconds.
        """
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    # --- scheduler ---------------------------------------------------------------------------

    async def _run(self) -> None:
        """Sleep until the earliest due entry (or an enqueue), start what is due, repeat."""
        while True:
            self._wake.clear()
            now = time.time()
            waiting = [e for e in self._entries.values() if e.id not in self._running]
            for entry in waiting:
                if entry.due_at <= now:
                    self._running[entry.id] = asyncio.create_task(
                        self._process(entry), name=f"queue-{entry.id}"
                    )
            upcoming = [e.due_at for e in waiting if e.id not in self._running]
            timeout = max(0.0, min(upcoming) - now) if upcoming else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _process(self, entry: QueueEntry) -> None:
        try:
            async with self._limit:
                if time.time() >= entry.expires_at:
                    await self._expire(entry)
                else:
                    await self._attempt(entry)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a bug or a disk error must not kill the scheduler
            entry.last_error = f"internal error: {error!r}"
            entry.next_attempt_at = time.time() + (self._retry or [1.0])[0]
            self._events.emit("queue-error", queue_id=entry.id, error=repr(error))
        finally:
            self._running.pop(entry.id, None)
            self._wake.set()

    # --- one attempt -------------------------------------------------------------------------

    async def _attempt(self, entry: QueueEntry) -> None:
        started = time.time()
        entry.attempts += 1
        entry.last_attempt_at = started
        data = await asyncio.to_thread(self._files.read_data, entry.id)
        by_domain: dict[str, list[str]] = {}
        for recipient in entry.recipients:
            by_domain.setdefault(domain_of(recipient), []).append(recipient)
        batches = await asyncio.gather(
            *(
                self._deliver_domain(entry, domain, rcpts, data)
                for domain, rcpts in by_domain.items()
            )
        )
        results = [result for batch in batches for result in batch]
        failed: list[tuple[RecipientResult, RecipientFailure]] = []
        deferred: list[RecipientResult] = []
        for result in results:
            if result.outcome is Outcome.DELIVERED:
                self._events.emit(
                    "delivered",
                    queue_id=entry.id,
                    recipient=result.recipient,
                    host=result.hop,
                    reply=result.diagnostic,
                    attempt=entry.attempts,
                )
            elif result.outcome is Outcome.FAILED:
                failed.append((result, RecipientFailure.of(result)))
            else:
                deferred.append(result)
                entry.failures[result.recipient] = RecipientFailure.of(result)
                entry.last_error = result.diagnostic
        entry.recipients = [result.recipient for result in deferred]
        if failed:
            await self._bouncer.bounce(entry, [(r.recipient, f) for r, f in failed], data, started)
        if not entry.recipients:
            await self._remove(entry)
            return
        next_at = max(started + retry_delay(self._retry, entry.attempts), time.time())
        expiring = next_at >= entry.expires_at
        entry.next_attempt_at = entry.expires_at if expiring else next_at
        await asyncio.to_thread(self._files.write_meta, entry)
        for result in deferred:
            self._events.emit(
                "deferred",
                queue_id=entry.id,
                recipient=result.recipient,
                attempt=entry.attempts,
                # None: no retry is left before the lifetime ends; the entry expires then.
                next_attempt_in=None if expiring else round(next_at - time.time(), 3),
                expires_in=round(entry.expires_at - time.time(), 3),
                status=result.status,
                reason=result.diagnostic,
            )

    async def _deliver_domain(
        self, entry: QueueEntry, domain: str, recipients: list[str], data: bytes
    ) -> list[RecipientResult]:
        if domain in self._local_domains:
            # The server stores local mail itself; this only catches an entry that was
            # queued for a domain that became local (e.g. a changed configuration).
            return [await self._store_local(entry, recipient, data) for recipient in recipients]
        route = await next_hops(
            domain, self.config.routing, self._resolver, myself=self.config.hostname
        )
        self._events.emit(
            "route",
            queue_id=entry.id,
            domain=domain,
            method=str(route.method),
            pattern=route.pattern,
            hops=[str(hop) for hop in route.hops],
            failure=None if route.failure is None else route.failure.text,
            status=None if route.failure is None else route.failure.status,
            notes=list(route.notes),
        )
        return await self._deliverer.deliver(
            queue_id=entry.id,
            sender="" if is_null_sender(entry.sender) else entry.sender,
            recipients=recipients,
            data=data,
            route=route,
        )

    async def _store_local(self, entry: QueueEntry, recipient: str, data: bytes) -> RecipientResult:
        if recipient.lower() not in {box.lower() for box in self.config.mailboxes}:
            # A catch-all accepted it at RCPT; local delivery finds no mailbox (Postfix's
            # local(8) words it so).
            return RecipientResult(
                recipient=recipient,
                outcome=Outcome.FAILED,
                status="5.1.1",
                diagnostic=f'unknown user: "{recipient.partition("@")[0].lower()}"',
                diagnostic_type=LOCAL_DIAGNOSTIC,
                remote_mta=self.config.hostname,
                hop="local",
            )
        try:
            stored = await self._store.deliver(recipient, data)
        except Exception as error:
            return RecipientResult(
                recipient=recipient,
                outcome=Outcome.DEFERRED,
                status="4.3.0",
                diagnostic=f"cannot store in the local mailbox: {error}",
                diagnostic_type=LOCAL_DIAGNOSTIC,
            )
        return RecipientResult(
            recipient=recipient,
            outcome=Outcome.DELIVERED,
            status="2.0.0",
            diagnostic=f"stored locally as {stored}",
            diagnostic_type=LOCAL_DIAGNOSTIC,
            remote_mta=self.config.hostname,
            hop="local",
        )

    # --- expiry and removal -------------------------------------------------------------------

    async def _expire(self, entry: QueueEntry) -> None:
        self._events.emit(
            "expired",
            queue_id=entry.id,
            recipients=entry.recipients,
            attempts=entry.attempts,
            lifetime=self._lifetime,
            last_error=entry.last_error,
        )
        failures = expiry_failures(entry)
        data = await asyncio.to_thread(self._files.read_data, entry.id)
        await self._bouncer.bounce(entry, failures, data, entry.last_attempt_at or time.time())
        entry.recipients = []
        await self._remove(entry)

    async def _remove(self, entry: QueueEntry) -> None:
        await asyncio.to_thread(self._files.unlink, entry.id)
        self._entries.pop(entry.id, None)
        self._events.emit("removed", queue_id=entry.id, attempts=entry.attempts)
        if not self._entries:
            self._idle.set()


def _message_id(data: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(data).get("Message-ID")
    return str(value).strip() if value else None
