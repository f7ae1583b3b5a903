"""The relay's outbound queue: durable entries, a retry schedule in lab time, bounces.

Every accepted message for a remote domain becomes a queue entry: two files
under `<data_dir>/queue`, the message bytes (`<id>.eml`) and its metadata
(`<id>.json`: envelope, pending recipients, attempts, next attempt, errors).
Both are written to a temporary name, fsynced and renamed, and the directory is
fsynced, so an entry `enqueue` returned exists after a crash; the metadata file
is written last, so a message file without one is a half-finished enqueue that
nobody acknowledged and is removed at start.

One scheduler task sleeps until the next entry is due (or `enqueue` wakes it)
and starts an attempt per due entry; nothing polls. An attempt groups the
pending recipients by domain, routes each domain (`routing.next_hops`) and
delivers it (`delivery.Deliverer`); 2xx recipients are done, 5xx ones bounce
now, 4xx and unreachable ones wait for the next retry. Retries follow
`QueueConfig.retry` (delays between attempts, in lab seconds, the last one
repeating), each counted from the start of the previous attempt so that slow
attempts do not stretch the schedule. `QueueConfig.lifetime` after the entry
was queued it expires: what is still pending bounces with 5.4.7 and the last
error seen for that recipient.

Bounces (RFC 3464, `dsn.build_dsn`) go to a local sender's mailbox directly and
to a remote sender through this same queue with the null sender "<>". A
message from the null sender never bounces (that is how bounce loops are
avoided): when it fails it is dropped, with an event saying so.

Delivery is at-least-once: a crash (or `stop`) after a remote server said 250
but before the entry was rewritten makes the next attempt deliver again, which
is what real MTAs do too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.nodes.config import QueueConfig
from lab.nodes.mailserver.delivery import (
    Deliverer,
    Outcome,
    RecipientResult,
    command_timeout_for,
)
from lab.nodes.mailserver.dsn import LOCAL_DIAGNOSTIC, FailedRecipient, build_dsn
from lab.nodes.mailserver.routing import next_hops
from lab.nodes.resolver import make_resolver

if TYPE_CHECKING:
    from lab.net import Connector
    from lab.nodes.config import MailServerConfig
    from lab.nodes.events import EventLog
    from lab.nodes.mailserver.store import MailStore

QUEUE_DIR = "queue"
META_SUFFIX = ".json"
DATA_SUFFIX = ".eml"
TMP_SUFFIX = ".tmp"
NULL_SENDER = "<>"
FORMAT_VERSION = 1
# A relay with a burst of queued mail should not open hundreds of connections at once.
MAX_CONCURRENT_ATTEMPTS = 32
# The schedule when a config has no queue section (topology always writes one for a
# relay): a relay built by hand still retries instead of failing on the first 4xx.
FALLBACK_QUEUE = QueueConfig(retry=[60.0], lifetime=3600.0)


@dataclass(frozen=True)
class QueueEntryView:
    """What the queue holds for one message right now (for `smtplab`, the TUI, tests)."""

    id: str
    sender: str
    recipients: tuple[str, ...]  # still pending
    attempts: int
    queued_at: float  # epoch seconds
    next_attempt_at: float  # epoch seconds; expiry time when no retry is left
    expires_at: float
    last_error: str | None
    in_progress: bool

    @property
    def next_attempt_in(self) -> float:
        """Seconds until the next attempt (0 when due or running)."""
        return max(0.0, self.next_attempt_at - time.time())


@dataclass
class _Failure:
    """The last thing that went wrong for a recipient: what its bounce will say."""

    status: str
    diagnostic: str
    diagnostic_type: str
    remote_mta: str | None
    stage: str | None

    @classmethod
    def of(cls, result: RecipientResult) -> _Failure:
        return cls(
            result.status,
            result.diagnostic,
            result.diagnostic_type,
            result.remote_mta,
            result.stage,
        )


@dataclass
class _Entry:
    """A queued message's metadata; the bytes stay on disk until an attempt reads them."""

    id: str
    sender: str
    recipients: list[str]
    queued_at: float
    expires_at: float
    next_attempt_at: float
    attempts: int = 0
    last_attempt_at: float | None = None
    last_error: str | None = None
    message_id: str | None = None
    client_address: str | None = None
    helo: str | None = None
    authenticated_as: str | None = None
    failures: dict[str, _Failure] = field(default_factory=dict)

    @property
    def due_at(self) -> float:
        return min(self.next_attempt_at, self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "id": self.id,
            "sender": self.sender,
            "recipients": self.recipients,
            "queued_at": self.queued_at,
            "expires_at": self.expires_at,
            "next_attempt_at": self.next_attempt_at,
            "attempts": self.attempts,
            "last_attempt_at": self.last_attempt_at,
            "last_error": self.last_error,
            "message_id": self.message_id,
            "client_address": self.client_address,
            "helo": self.helo,
            "authenticated_as": self.authenticated_as,
            "failures": {rcpt: vars(failure) for rcpt, failure in self.failures.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> _Entry:
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown queue file version {data.get('version')!r}")
        return cls(
            id=str(data["id"]),
            sender=str(data["sender"]),
            recipients=[str(r) for r in data["recipients"]],
            queued_at=float(data["queued_at"]),
            expires_at=float(data["expires_at"]),
            next_attempt_at=float(data["next_attempt_at"]),
            attempts=int(data["attempts"]),
            last_attempt_at=data.get("last_attempt_at"),
            last_error=data.get("last_error"),
            message_id=data.get("message_id"),
            client_address=data.get("client_address"),
            helo=data.get("helo"),
            authenticated_as=data.get("authenticated_as"),
            failures={rcpt: _Failure(**value) for rcpt, value in data["failures"].items()},
        )

    def view(self, in_progress: bool) -> QueueEntryView:
        return QueueEntryView(
            id=self.id,
            sender=self.sender,
            recipients=tuple(self.recipients),
            attempts=self.attempts,
            queued_at=self.queued_at,
            next_attempt_at=self.due_at,
            expires_at=self.expires_at,
            last_error=self.last_error,
            in_progress=in_progress,
        )


def is_null_sender(sender: str) -> bool:
    """MAIL FROM:<> — a bounce or other notification that must never be bounced."""
    return sender.strip() in ("", NULL_SENDER)


def domain_of(address: str) -> str:
    """The domain part of an address, lower-cased."""
    return address.rpartition("@")[2].lower().rstrip(".")


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
        self._schedule = config.queue or FALLBACK_QUEUE
        self._store = store
        self._events = events
        self._local_domains = {domain.lower() for domain in config.domains}
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
        self._entries: dict[str, _Entry] = {}
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
        entries = await asyncio.to_thread(self._load)
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
        entry = _Entry(
            id=self._new_id(),
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
        await asyncio.to_thread(self._write_new, entry, data)
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

    def flush(self) -> int:
        """Attempt every waiting entry now (Postfix's `postqueue -f`); returns how many.

        Expiry times stay as they were: flushing never extends a message's life.
        """
        now = time.time()
        waiting = [e for e in self._entries.values() if e.id not in self._running]
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

    async def _process(self, entry: _Entry) -> None:
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

    async def _attempt(self, entry: _Entry) -> None:
        started = time.time()
        entry.attempts += 1
        entry.last_attempt_at = started
        data = await asyncio.to_thread(self._read_data, entry.id)
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
        failed: list[tuple[RecipientResult, _Failure]] = []
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
                failed.append((result, _Failure.of(result)))
            else:
                deferred.append(result)
                entry.failures[result.recipient] = _Failure.of(result)
                entry.last_error = result.diagnostic
        entry.recipients = [result.recipient for result in deferred]
        if failed:
            await self._bounce(entry, [(r.recipient, f) for r, f in failed], data, started)
        if not entry.recipients:
            await self._remove(entry)
            return
        next_at = max(started + retry_delay(self._retry, entry.attempts), time.time())
        expiring = next_at >= entry.expires_at
        entry.next_attempt_at = entry.expires_at if expiring else next_at
        await asyncio.to_thread(self._write_meta, entry)
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
        self, entry: _Entry, domain: str, recipients: list[str], data: bytes
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

    async def _store_local(self, entry: _Entry, recipient: str, data: bytes) -> RecipientResult:
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

    # --- expiry and bounces ------------------------------------------------------------------

    async def _expire(self, entry: _Entry) -> None:
        self._events.emit(
            "expired",
            queue_id=entry.id,
            recipients=entry.recipients,
            attempts=entry.attempts,
            lifetime=self._lifetime,
            last_error=entry.last_error,
        )
        failures: list[tuple[str, _Failure]] = []
        for recipient in entry.recipients:
            last = entry.failures.get(recipient)
            # The transient 4.x.y becomes permanent 5.x.y; the text stays the last error,
            # which is what tells the sender why (remote down, greylisted forever ...).
            failures.append(
                (
                    recipient,
                    _Failure(
                        status="5.4.7",
                        diagnostic=last.diagnostic if last else "delivery time expired",
                        diagnostic_type=last.diagnostic_type if last else LOCAL_DIAGNOSTIC,
                        remote_mta=last.remote_mta if last else None,
                        stage=last.stage if last else None,
                    ),
                )
            )
        data = await asyncio.to_thread(self._read_data, entry.id)
        await self._bounce(entry, failures, data, entry.last_attempt_at or time.time())
        entry.recipients = []
        await self._remove(entry)

    async def _bounce(
        self,
        entry: _Entry,
        failures: list[tuple[str, _Failure]],
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
            reporting_mta=self.config.hostname,
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

    async def _send_dsn(self, entry: _Entry, sender: str, dsn: bytes) -> None:
        if domain_of(sender) in self._local_domains:
            try:
                stored = await self._store.deliver(sender, dsn)
            except Exception as error:
                self._events.emit("dsn-failed", queue_id=entry.id, dsn_to=sender, error=str(error))
                return
            self._events.emit("dsn", queue_id=entry.id, dsn_to=sender, stored_as=stored)
            return
        dsn_id = await self.enqueue(sender=NULL_SENDER, recipients=[sender], data=dsn)
        self._events.emit("dsn", queue_id=entry.id, dsn_to=sender, dsn_queue_id=dsn_id)

    async def _remove(self, entry: _Entry) -> None:
        await asyncio.to_thread(self._unlink, entry.id)
        self._entries.pop(entry.id, None)
        self._events.emit("removed", queue_id=entry.id, attempts=entry.attempts)
        if not self._entries:
            self._idle.set()

    # --- files (run in a worker thread: disk I/O stays off the event loop) -------------------

    def _new_id(self) -> str:
        # Time first so that a directory listing is in arrival order, like Postfix ids.
        return f"{time.time_ns() // 1000:X}{secrets.token_hex(2).upper()}"

    def _path(self, queue_id: str, suffix: str) -> Path:
        return self.directory / f"{queue_id}{suffix}"

    def _write_new(self, entry: _Entry, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._path(entry.id, DATA_SUFFIX), data)
        _atomic_write(self._path(entry.id, META_SUFFIX), _dump(entry))
        _fsync_directory(self.directory)

    def _write_meta(self, entry: _Entry) -> None:
        _atomic_write(self._path(entry.id, META_SUFFIX), _dump(entry))

    def _read_data(self, queue_id: str) -> bytes:
        return self._path(queue_id, DATA_SUFFIX).read_bytes()

    def _unlink(self, queue_id: str) -> None:
        # Metadata first: without it the message file is an orphan that `_load` cleans up.
        self._path(queue_id, META_SUFFIX).unlink(missing_ok=True)
        self._path(queue_id, DATA_SUFFIX).unlink(missing_ok=True)
        _fsync_directory(self.directory)

    def _load(self) -> list[_Entry]:
        if not self.directory.is_dir():
            return []
        entries: list[_Entry] = []
        for path in sorted(self.directory.iterdir()):
            if path.name.endswith(TMP_SUFFIX):
                path.unlink(missing_ok=True)  # a write that never reached its rename
            elif path.suffix == DATA_SUFFIX and not path.with_suffix(META_SUFFIX).exists():
                path.unlink(missing_ok=True)  # an enqueue that crashed before it returned
            elif path.suffix == META_SUFFIX:
                try:
                    entry = _Entry.from_json(json.loads(path.read_text(encoding="utf-8")))
                except (ValueError, KeyError, TypeError) as error:
                    self._events.emit("queue-corrupt", file=path.name, error=str(error))
                    continue
                if not path.with_suffix(DATA_SUFFIX).exists():
                    self._events.emit("queue-corrupt", file=path.name, error="message missing")
                    continue
                entries.append(entry)
        return sorted(entries, key=lambda e: (e.queued_at, e.id))


def _dump(entry: _Entry) -> bytes:
    return json.dumps(entry.to_json(), indent=1).encode("utf-8")


def _atomic_write(path: Path, data: bytes) -> None:
    """tmp + fsync + rename: a reader sees the old file or the new one, never half of it."""
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with tmp.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    tmp.replace(path)


def _fsync_directory(directory: Path) -> None:
    """Make the renames themselves durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _message_id(data: bytes) -> str | None:
    value = BytesHeaderParser().parsebytes(data).get("Message-ID")
    return str(value).strip() if value else None
