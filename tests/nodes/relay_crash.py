"""Kill -9 of the relay in the middle of a run, then restart: count what reached the MX.

Shared by `tests/nodes/test_relay_crash.py` (CI size) and
`benchmarks/relay_crash.py` (full size). The relay is a real node process
(`python -m lab.nodes relay config.json`) with its queue on disk; the MX runs in
this event loop; the sender is Python's smtplib in a worker thread and behaves
like a mail program: a message whose DATA got no 250 is sent again.

The run: the MX is down at first, so the relay defers and its queue fills; the
relay is killed with SIGKILL (at a point drawn from the seed, 20-40 % of the
messages acknowledged) and restarted on the same data directory, where it must
resume that queue. The MX comes up at 50 %, and the relay is killed again at a
point between 60 and 90 % while it both accepts and delivers (a message the MX
acknowledged but the relay had not yet removed is delivered again after the
restart). At the end every Message-ID must be in the MX's mailbox exactly once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import signal
import smtplib
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import make_msgid
from pathlib import Path

from lab.net import DirectConnector
from lab.nodes.config import (
    ListenerConfig,
    MailServerConfig,
    NextHop,
    QueueConfig,
    RelayPermit,
    RoutingConfig,
)
from lab.nodes.events import read_events
from lab.nodes.mailserver import server
from lab.nodes.mailserver.once import header_message_id
from lab.nodes.mailserver.queue_files import META_SUFFIX, QUEUE_DIR
from lab.nodes.mailserver.store import MailStore
from lab.scenario.model import AuthPolicy, ListenerTls

LOCALHOST = "127.0.0.1"
RECIPIENT = "bob@example.net"
SENDER = "alice@example.com"


@dataclass
class CrashRun:
    """What one run saw."""

    sent: list[str] = field(default_factory=list)  # Message-IDs in sending order
    acknowledged: int = 0
    failed_tries: int = 0  # sends without a 250 (relay dead or restarting), tried again
    refused: list[str] = field(default_factory=list)  # 5xx replies: must stay empty
    queued_at_kill: list[int] = field(default_factory=list)  # entries on disk at each SIGKILL
    resumed: int = 0  # entries the restarted relay loaded
    suppressed: int = 0  # redeliveries the MX acknowledged without a second copy
    delivered: collections.Counter[str] = field(default_factory=collections.Counter)
    seconds: float = 0.0

    @property
    def lost(self) -> list[str]:
        return [mid for mid in self.sent if self.delivered[mid] == 0]

    @property
    def twice(self) -> list[str]:
        return [mid for mid, count in self.delivered.items() if count > 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def listener(bind_port: int) -> ListenerConfig:
    return ListenerConfig(
        port=25,
        bind_port=bind_port,
        tls=ListenerTls.NONE,
        auth=AuthPolicy.OFF,
        require_tls=False,
        auth_requires_tls=False,
    )


def message(index: int, message_id: str, rng: random.Random) -> bytes:
    words = ("".join(rng.choices("abcdefghijklmnop", k=rng.randint(1, 12))) for _ in range(200))
    lines = [" ".join(next(words) for _ in range(8)) for _ in range(rng.randint(1, 20))]
    body = "\r\n".join(lines)
    return (
        f"From: {SENDER}\r\nTo: {RECIPIENT}\r\nSubject: crash test {index}\r\n"
        f"Message-ID: {message_id}\r\n\r\n{body}\r\n"
    ).encode()


class Relay:
    """The relay node as its own process, restartable on the same data directory."""

    def __init__(self, root: Path, mx_port: int) -> None:
        self.port = free_port()
        self.data_dir = root / "relay"
        config = MailServerConfig(
            name="relay",
            role="relay",
            data_dir=self.data_dir,
            listen_host=LOCALHOST,
            hostname="relay.example.com",
            listeners=[listener(self.port)],
            auth_mechanisms=[],
            permit_relay=RelayPermit(authenticated=False, networks=["127.0.0.0/8"]),
            routing=RoutingConfig(smarthost=NextHop(host=LOCALHOST, port=mx_port)),
            queue=QueueConfig(retry=[1.0], lifetime=600.0, connect_timeout=2.0),
        )
        self.config_file = root / "relay.json"
        self.config_file.write_text(config.model_dump_json())
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with (self.data_dir.parent / "relay.log").open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "lab.nodes",
                "relay",
                str(self.config_file),
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + 30
        while True:  # ready: its banner was read
            try:
                reader, writer = await asyncio.open_connection(LOCALHOST, self.port)
            except OSError:
                if self.process.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError("the relay did not start") from None
                await asyncio.sleep(0.05)
                continue
            banner = await reader.readline()
            writer.close()
            if banner.startswith(b"220"):
                return

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                await self.kill()

    def queued(self) -> int:
        return len(list((self.data_dir / QUEUE_DIR).glob(f"*{META_SUFFIX}")))


def send_all(port: int, messages: list[bytes], run: CrashRun, stop: threading.Event) -> None:
    """The mail program (worker thread): every message until it got its 250."""
    client: smtplib.SMTP | None = None
    for data in messages:
        while not stop.is_set():
            try:
                if client is None:
                    client = smtplib.SMTP(LOCALHOST, port, timeout=10)
                client.sendmail(SENDER, [RECIPIENT], data)
            except smtplib.SMTPResponseException as error:
                if error.smtp_code >= 500:  # refused for good: a defect, not the crash
                    run.refused.append(f"{error.smtp_code} {error.smtp_error!r}")
                    return
                run.failed_tries += 1
                client = None
                continue
            except (smtplib.SMTPException, OSError):
                run.failed_tries += 1
                with contextlib.suppress(Exception):
                    if client is not None:
                        client.close()
                client = None
                time.sleep(0.02)  # the relay is restarting
                continue
            run.acknowledged += 1
            break
    if client is not None:
        with contextlib.suppress(Exception):
            client.quit()


async def crash_run(root: Path, count: int, seed: int, *, timeout: float = 120.0) -> CrashRun:
    """Send `count` messages through a relay that is killed and restarted once."""
    rng = random.Random(seed)
    run = CrashRun()
    messages = []
    for index in range(count):
        message_id = make_msgid(f"crash{index}", domain="pc.example.com")
        run.sent.append(message_id)
        messages.append(message(index, message_id, rng))
    mx_port = free_port()
    first_kill = rng.randint(int(count * 0.2), int(count * 0.4))
    mx_at = int(count * 0.5)
    second_kill = rng.randint(int(count * 0.6), int(count * 0.9))
    relay = Relay(root, mx_port)
    mx_config = MailServerConfig(
        name="mx",
        role="mx",
        data_dir=root / "mx",
        listen_host=LOCALHOST,
        hostname="mx.example.net",
        listeners=[listener(mx_port)],
        auth_mechanisms=[],
        domains=["example.net"],
        mailboxes={RECIPIENT: "active"},
    )
    started = time.monotonic()
    stop = threading.Event()
    mx = None
    await relay.start()
    sender = asyncio.create_task(asyncio.to_thread(send_all, relay.port, messages, run, stop))
    try:
        async with asyncio.timeout(timeout):
            await _until(run, first_kill)
            await _kill_and_restart(relay, run, rng)
            await _until(run, mx_at)
            mx = await server.start(mx_config, connector=DirectConnector())
            await _until(run, second_kill)
            await _kill_and_restart(relay, run, rng)
            await sender
            while relay.queued():
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        with contextlib.suppress(BaseException):
            await sender
        await relay.stop()
        if mx is not None:
            await mx.stop()
    run.seconds = time.monotonic() - started
    loads = [e for e in read_events(relay.data_dir) if e.get("event") == "queue-loaded"]
    run.resumed = sum(int(event["entries"]) for event in loads)
    run.suppressed = sum(1 for e in read_events(root / "mx") if e.get("event") == "duplicate")
    for stored in MailStore(root / "mx" / "mailboxes").messages(RECIPIENT):
        run.delivered[header_message_id(stored.data) or "?"] += 1
    return run


async def _until(run: CrashRun, acknowledged: int) -> None:
    while run.acknowledged < acknowledged:
        await asyncio.sleep(0.005)


async def _kill_and_restart(relay: Relay, run: CrashRun, rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0.0, 0.02))  # somewhere inside a transaction or delivery
    await relay.kill()
    run.queued_at_kill.append(relay.queued())
    await relay.start()
