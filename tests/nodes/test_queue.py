"""The relay's outbound queue end to end: real lab DNS, real SMTP receivers, real files.

The lab DNS answers lab addresses (10.213.1.x) while the receiving servers
listen on 127.0.0.1 ephemeral ports; `LabConnector` maps one to the other,
which is exactly what the local backend's connector does. Lab time is short
(retries after 0.1 s and 0.2 s, a 0.6 s lifetime) so the whole file runs in
a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from lab.net import ConnectTimeout, HostUnreachable, Streams, open_tcp
from lab.nodes import dns as dns_node
from lab.nodes.config import (
    ConnectorConfig,
    MailServerConfig,
    NextHop,
    QueueConfig,
    ResolverConfig,
    RoutingConfig,
)
from lab.nodes.events import EventLog, read_events
from lab.nodes.mailserver.dsn import parse_dsn
from lab.nodes.mailserver.queue import QUEUE_DIR, OutboundQueue, retry_delay
from lab.nodes.mailserver.store import MailStore
from lab.nodes.tls import issue_certificates, server_context
from lab.scenario.model import CertificateFault
from tests.nodes.test_routing import dns_config

LOOPBACK = "127.0.0.1"
RELAY_HOST = "mail.example.com"
ALICE = "alice@example.com"  # a local sender: bounces land in her mailbox on the relay
RETRY = [0.1, 0.2]
LIFETIME = 0.6
IDLE_TIMEOUT = 5.0

MX_NET = "10.213.1.12"
APEX_ORG = "10.213.1.13"
CONNECTOR_B = "10.213.1.20"
SMARTHOST = "10.213.1.21"
MX_DOWN = "10.213.1.40"
MX1_MULTI = "10.213.1.50"
MX2_MULTI = "10.213.1.51"
MX_TLS = "10.213.1.60"
RECORDS = [
    ("example.net.", "MX", "10 mx.example.net."),
    ("mx.example.net.", "A", MX_NET),
    ("example.org.", "A", APEX_ORG),
    ("nullmx.test.", "MX", "0 ."),
    ("down.test.", "MX", "10 mx.down.test."),
    ("mx.down.test.", "A", MX_DOWN),
    ("multi.test.", "MX", "10 mx1.multi.test."),
    ("multi.test.", "MX", "20 mx2.multi.test."),
    ("mx1.multi.test.", "A", MX1_MULTI),
    ("mx2.multi.test.", "A", MX2_MULTI),
    ("tls.test.", "MX", "10 mx.tls.test."),
    ("mx.tls.test.", "A", MX_TLS),
    ("connector-b.example.com.", "A", CONNECTOR_B),
    ("smarthost.example.com.", "A", SMARTHOST),
]
ZONES = [
    "example.net.",
    "example.org.",
    "nullmx.test.",
    "down.test.",
    "multi.test.",
    "tls.test.",
    "example.com.",
]


def message(message_id: str = "<m1@pc1.office.lan>", sender: str = ALICE) -> bytes:
    return (
        f"From: {sender}\r\nTo: someone\r\nSubject: test\r\nMessage-ID: {message_id}\r\n\r\n"
        "Hello.\r\n.leading dot survives\r\n"
    ).encode()


# --- the world around the relay ------------------------------------------------------------


class LabConnector:
    """(lab address, port) -> a loopback port; blackholed addresses time out at once."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, int], int] = {}
        self.blackholed: set[str] = set()
        self.calls: list[tuple[str, int]] = []

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        self.calls.append((host, port))
        if host in self.blackholed:
            # A dropped SYN, without making the test wait out the connect timeout.
            raise ConnectTimeout(errno.ETIMEDOUT, f"connect to {host}:{port} timed out")
        real = self.routes.get((host, port))
        if real is None:
            raise HostUnreachable(errno.EHOSTUNREACH, f"no route to {host}:{port}")
        return await open_tcp(LOOPBACK, real, timeout=timeout)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Receiver:
    """A receiving MTA: 550 5.1.1 for `unknown`, 451 4.7.1 once per `greylist` address."""

    hostname: str
    unknown: set[str] = field(default_factory=set)
    greylist: set[str] = field(default_factory=set)
    tls: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None  # AUTH required, with this account only
    received: list[Received] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    _seen: set[str] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        # AUTH offered in plaintext; MAIL without it gets 530 (see handle_MAIL).
        auth: dict[str, Any] = {}
        if self.login is not None:
            auth = {"authenticator": self._authenticate, "auth_require_tls": False}
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname=self.hostname, tls_context=self.tls, loop=loop, **auth),
            LOOPBACK,
            0,
        )
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        given = (data.login.decode(), data.password.decode())
        # handled=False: aiosmtpd sends its own 535 5.7.8 on a failure.
        return AuthResult(success=given == self.login, handled=False)

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.login is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.unknown:
            reply = f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        elif address in self.greylist and address not in self._seen:
            self._seen.add(address)
            reply = f"451 4.7.1 <{address}>: Recipient address rejected: Greylisted"
        else:
            envelope.rcpt_tos.append(address)
            reply = "250 2.1.5 OK"
        self.rcpt_replies.append(reply)
        return reply

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self.received.append(Received(envelope.mail_from or "", list(envelope.rcpt_tos), content))
        return "250 2.0.0 Ok: queued as R1"


class World:
    """DNS, receivers, a connector, and the relay's queue(s), all cleaned up at the end."""

    def __init__(self, root: Path, dns_port: int) -> None:
        self.root = root
        self.dns_port = dns_port
        self.connector = LabConnector()
        self.data_dir = root / "relay"
        self.store = MailStore(self.data_dir / "mailboxes")
        self.events = EventLog(self.data_dir, "relay")
        self.receivers: list[Receiver] = []
        self.queues: list[OutboundQueue] = []
        self.scripted: list[Scripted] = []
        self._sockets: list[socket.socket] = []

    async def receiver(self, hostname: str, address: str, port: int = 25, **kw: Any) -> Receiver:
        receiver = Receiver(hostname, **kw)
        self.connector.routes[(address, port)] = await receiver.start()
        self.receivers.append(receiver)
        return receiver

    def closed_port(self, address: str, port: int = 25) -> None:
        """Map `address:port` to a bound socket that does not listen: connection refused."""
        sock = socket.socket()
        sock.bind((LOOPBACK, 0))
        self._sockets.append(sock)
        self.connector.routes[(address, port)] = sock.getsockname()[1]

    def config(self, routing: RoutingConfig | None = None, **queue: Any) -> MailServerConfig:
        return MailServerConfig(
            name="relay",
            data_dir=self.data_dir,
            role="relay",
            hostname=RELAY_HOST,
            listeners=[],
            auth_mechanisms=[],
            domains=["example.com"],
            routing=routing or RoutingConfig(),
            queue=QueueConfig(
                **{"retry": RETRY, "lifetime": LIFETIME, "connect_timeout": 0.5, **queue}
            ),
            resolver=ResolverConfig(nameserver=LOOPBACK, port=self.dns_port, timeout=1.0),
            ca_file=self.root / "tls" / "ca.pem" if (self.root / "tls").exists() else None,
        )

    async def queue(self, routing: RoutingConfig | None = None, **queue: Any) -> OutboundQueue:
        outbound = OutboundQueue(
            self.config(routing, **queue),
            store=self.store,
            connector=self.connector,
            events=self.events,
        )
        self.queues.append(outbound)
        await outbound.start()
        return outbound

    def log(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in read_events(self.data_dir)
            if (event is None or e["event"] == event)
            and all(e.get(key) == value for key, value in match.items())
        ]

    def bounces(self, address: str = ALICE) -> list[bytes]:
        return [stored.data for stored in self.store.messages(address)]

    def queue_files(self) -> list[str]:
        directory = self.data_dir / QUEUE_DIR
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []

    async def close(self) -> None:
        for outbound in self.queues:
            await outbound.stop()
        for receiver in self.receivers:
            await receiver.stop()
        for server in self.scripted:
            await server.stop()
        for sock in self._sockets:
            sock.close()
        await self.store.close()
        self.events.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    dns = await dns_node.start(dns_config(tmp_path / "dns", RECORDS, ZONES, {}))
    lab = World(tmp_path, dns.ports[53])
    try:
        yield lab
    finally:
        await lab.close()
        await dns.stop()


async def send(
    outbound: OutboundQueue, recipients: Iterable[str], sender: str = ALICE, **kw: Any
) -> str:
    queue_id = await outbound.enqueue(
        sender=sender, recipients=list(recipients), data=message(sender=sender, **kw)
    )
    await outbound.wait_idle(IDLE_TIMEOUT)
    return queue_id


# --- tests -----------------------------------------------------------------------------------


def test_retry_delay_repeats_the_last_value() -> None:
    assert [retry_delay([1.0, 5.0], n) for n in (1, 2, 3, 4)] == [1.0, 5.0, 5.0, 5.0]
    assert retry_delay([], 1) == float("inf")


async def test_delivers_via_mx(world: World) -> None:
    mx = await world.receiver("mx.example.net", MX_NET)
    outbound = await world.queue()
    queue_id = await send(outbound, ["bob@example.net", "carol@EXAMPLE.net"])
    (got,) = mx.received
    assert got.mail_from == ALICE
    assert got.rcpt_tos == ["bob@example.net", "carol@EXAMPLE.net"]
    assert b"Message-ID: <m1@pc1.office.lan>" in got.data
    assert b"\r\n.leading dot survives" in got.data  # dot-stuffing undone by the receiver
    (queued,) = world.log("queued", queue_id=queue_id)
    assert queued["message_id"] == "<m1@pc1.office.lan>"
    (route,) = world.log("route", queue_id=queue_id)
    assert route["method"] == "mx"
    assert route["hops"] == [f"mx.example.net[{MX_NET}]:25"]
    (attempt,) = world.log("delivery-attempt", queue_id=queue_id)
    assert attempt["host"] == "mx.example.net"
    assert attempt["address"] == MX_NET
    assert attempt["port"] == 25
    assert attempt["code"] == 250
    assert any(line["text"].startswith("EHLO mail.example.com") for line in attempt["transcript"])
    mail_from = f"MAIL FROM:<{ALICE}> SIZE={len(message())}"
    assert any(line["text"] == mail_from for line in attempt["transcript"])
    delivered = world.log("delivered", queue_id=queue_id)
    assert {e["recipient"] for e in delivered} == {"bob@example.net", "carol@EXAMPLE.net"}
    assert delivered[0]["host"] == f"mx.example.net[{MX_NET}]:25"
    assert delivered[0]["reply"].startswith("250 2.0.0")
    assert world.queue_files() == []
    assert outbound.snapshot() == []


async def test_a_fallback_without_mx(world: World) -> None:
    apex = await world.receiver("example.org", APEX_ORG)
    outbound = await world.queue()
    queue_id = await send(outbound, ["dave@example.org"])
    assert [r.rcpt_tos for r in apex.received] == [["dave@example.org"]]
    (route,) = world.log("route", queue_id=queue_id)
    assert route["method"] == "implicit-mx"


async def test_next_mx_when_the_first_refuses(world: World) -> None:
    world.closed_port(MX1_MULTI)
    second = await world.receiver("mx2.multi.test", MX2_MULTI)
    outbound = await world.queue()
    queue_id = await send(outbound, ["erin@multi.test"])
    assert len(second.received) == 1
    first, then = world.log("delivery-attempt", queue_id=queue_id)
    assert first["address"] == MX1_MULTI
    assert first["text"] == f"connect to mx1.multi.test[{MX1_MULTI}]:25: Connection refused"
    assert then["address"] == MX2_MULTI
    assert then["code"] == 250


@pytest.mark.parametrize(
    ("recipient", "status", "words"),
    [
        ("x@nullmx.test", "5.1.10", "does not accept mail (null MX)"),
        ("x@no-such-domain.invalid", "5.1.2", "Host or domain name not found"),
    ],
    ids=["null-mx", "nxdomain"],
)
async def test_dns_verdicts_bounce(world: World, recipient: str, status: str, words: str) -> None:
    outbound = await world.queue()
    queue_id = await send(outbound, [recipient])
    (bounced,) = world.log("bounced", queue_id=queue_id)
    assert bounced["status"] == status
    assert bounced["dsn_to"] == ALICE
    (raw,) = world.bounces()
    report = parse_dsn(raw)
    assert report.original_message_id == "<m1@pc1.office.lan>"
    entry = report.recipient(recipient)
    assert entry.status == status
    assert entry.action == "failed"
    assert entry.diagnostic_code is not None
    assert words in entry.diagnostic_code
    assert world.log("delivery-attempt") == []  # nothing to connect to
    assert world.queue_files() == []


async def test_connector_and_smarthost(world: World) -> None:
    connector_b = await world.receiver("connector-b.example.com", CONNECTOR_B, 587)
    smarthost = await world.receiver("smarthost.example.com", SMARTHOST, 2525)
    mx = await world.receiver("mx.example.net", MX_NET)
    routing = RoutingConfig(
        smarthost=NextHop(host="smarthost.example.com", port=2525),
        connectors=[
            ConnectorConfig(domains=["*.net"], to=NextHop(host="connector-b.example.com", port=587))
        ],
    )
    outbound = await world.queue(routing)
    await send(outbound, ["bob@example.net", "dave@example.org"])
    assert [r.rcpt_tos for r in connector_b.received] == [["bob@example.net"]]
    assert [r.rcpt_tos for r in smarthost.received] == [["dave@example.org"]]
    assert mx.received == []  # the MX is never asked when a connector matches
    methods = {e["domain"]: (e["method"], e["pattern"]) for e in world.log("route")}
    assert methods == {"example.net": ("connector", "*.net"), "example.org": ("smarthost", None)}


async def test_unknown_user_bounces_to_local_sender(world: World) -> None:
    mx = await world.receiver("mx.example.net", MX_NET, unknown={"nobody@example.net"})
    outbound = await world.queue()
    queue_id = await send(outbound, ["bob@example.net", "nobody@example.net"])
    assert [r.rcpt_tos for r in mx.received] == [["bob@example.net"]]
    (raw,) = world.bounces()
    report = parse_dsn(raw)
    assert report.to == ALICE
    assert report.reporting_mta == RELAY_HOST
    assert report.queue_id == queue_id
    assert report.original_message_id == "<m1@pc1.office.lan>"
    (entry,) = report.recipients
    assert entry.recipient == "nobody@example.net"
    assert entry.status == "5.1.1"
    assert entry.remote_mta == "mx.example.net"
    assert entry.diagnostic_type == "smtp"
    assert entry.diagnostic_code == (
        "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown"
    )
    assert "RCPT TO" in report.explanation
    (bounced,) = world.log("bounced", queue_id=queue_id)
    assert bounced["recipient"] == "nobody@example.net"
    assert [e["recipient"] for e in world.log("delivered", queue_id=queue_id)] == [
        "bob@example.net"
    ]


async def test_greylisted_then_delivered_on_retry(world: World) -> None:
    mx = await world.receiver("mx.example.net", MX_NET, greylist={"bob@example.net"})
    outbound = await world.queue()
    queue_id = await send(outbound, ["bob@example.net"])
    assert len(mx.received) == 1
    assert mx.rcpt_replies[0].startswith("451 4.7.1")
    (deferred,) = world.log("deferred", queue_id=queue_id)
    assert deferred["recipient"] == "bob@example.net"
    assert deferred["status"] == "4.7.1"
    assert deferred["reason"].startswith("451 4.7.1 <bob@example.net>")
    assert deferred["next_attempt_in"] == pytest.approx(RETRY[0], abs=0.1)
    attempts = world.log("delivery-attempt", queue_id=queue_id)
    assert [a["code"] for a in attempts] == [451, 250]
    (delivered,) = world.log("delivered", queue_id=queue_id)
    assert delivered["attempt"] == 2
    assert world.bounces() == []


@pytest.mark.parametrize("how", ["timeout", "refused"])
async def test_unreachable_retries_then_expires(world: World, how: str) -> None:
    if how == "timeout":
        world.connector.blackholed.add(MX_DOWN)
        reason = "Connection timed out"
    else:
        world.closed_port(MX_DOWN)
        reason = "Connection refused"
    # Attempts fall due at 0, 0.1, 0.3 and 0.5 s; the next would be at 0.7 s, when the
    # lifetime ends, so the entry expires instead. The margins absorb a loaded machine.
    outbound = await world.queue(lifetime=0.7)
    queue_id = await outbound.enqueue(sender=ALICE, recipients=["frank@down.test"], data=message())
    await asyncio.sleep(0.05)
    (view,) = outbound.snapshot()
    assert view.id == queue_id
    assert view.recipients == ("frank@down.test",)
    assert view.attempts == 1
    assert view.last_error == f"connect to mx.down.test[{MX_DOWN}]:25: {reason}"
    await outbound.wait_idle(IDLE_TIMEOUT)
    attempts = world.log("delivery-attempt", queue_id=queue_id)
    assert len(attempts) == 4
    assert world.connector.calls == [(MX_DOWN, 25)] * 4
    deferred = world.log("deferred", queue_id=queue_id)
    assert [e["attempt"] for e in deferred] == [1, 2, 3, 4]
    assert deferred[-1]["next_attempt_in"] is None  # no retry left: it expires next
    (expired,) = world.log("expired", queue_id=queue_id)
    assert expired["attempts"] == 4
    (raw,) = world.bounces()
    entry = parse_dsn(raw).recipient("frank@down.test")
    assert entry.status == "5.4.7"
    assert entry.diagnostic_code == f"connect to mx.down.test[{MX_DOWN}]:25: {reason}"
    (bounced,) = world.log("bounced", queue_id=queue_id)
    assert bounced["status"] == "5.4.7"
    assert world.queue_files() == []


async def test_persistent_across_restart(world: World) -> None:
    world.connector.blackholed.add(MX_NET)
    first = await world.queue(retry=[0.3], lifetime=60.0)
    queue_id = await first.enqueue(sender=ALICE, recipients=["bob@example.net"], data=message())
    assert sorted(world.queue_files()) == [f"{queue_id}.eml", f"{queue_id}.json"]
    while not world.log("deferred", queue_id=queue_id):
        await asyncio.sleep(0.01)
    await first.stop()
    assert sorted(world.queue_files()) == [f"{queue_id}.eml", f"{queue_id}.json"]
    # The destination comes back; a new relay process on the same directory picks the
    # entry up at the time the first one had scheduled.
    world.connector.blackholed.clear()
    mx = await world.receiver("mx.example.net", MX_NET)
    second = await world.queue(lifetime=60.0)
    (view,) = second.snapshot()
    assert view.id == queue_id
    assert view.attempts == 1
    assert view.last_error == f"connect to mx.example.net[{MX_NET}]:25: Connection timed out"
    assert 0.0 < view.next_attempt_in <= 0.3
    await second.wait_idle(IDLE_TIMEOUT)
    assert [r.rcpt_tos for r in mx.received] == [["bob@example.net"]]
    (delivered,) = world.log("delivered", queue_id=queue_id)
    assert delivered["attempt"] == 2
    assert world.queue_files() == []


async def test_flush_retries_now(world: World) -> None:
    world.connector.blackholed.add(MX_NET)
    outbound = await world.queue(retry=[30.0], lifetime=60.0)
    queue_id = await outbound.enqueue(sender=ALICE, recipients=["bob@example.net"], data=message())
    while not world.log("deferred", queue_id=queue_id):
        await asyncio.sleep(0.01)
    world.connector.blackholed.clear()
    mx = await world.receiver("mx.example.net", MX_NET)
    assert outbound.flush() == 1
    await outbound.wait_idle(IDLE_TIMEOUT)
    assert len(mx.received) == 1


async def test_half_written_files_are_cleaned_at_start(world: World) -> None:
    directory = world.data_dir / QUEUE_DIR
    directory.mkdir(parents=True)
    (directory / "ORPHAN.eml").write_bytes(message())
    (directory / "PARTIAL.json.tmp").write_bytes(b"{")
    (directory / "BROKEN.json").write_text("not json")
    (directory / "BROKEN.eml").write_bytes(message())
    outbound = await world.queue()
    assert outbound.snapshot() == []
    assert world.queue_files() == ["BROKEN.eml", "BROKEN.json"]  # kept for a human to look at
    assert [e["file"] for e in world.log("queue-corrupt")] == ["BROKEN.json"]


async def test_bounce_to_remote_sender_uses_null_sender(world: World) -> None:
    mx = await world.receiver("mx.example.net", MX_NET, unknown={"nobody@example.net"})
    apex = await world.receiver("example.org", APEX_ORG)
    outbound = await world.queue()
    queue_id = await send(outbound, ["nobody@example.net"], sender="dave@example.org")
    assert mx.received == []
    (bounce,) = apex.received
    assert bounce.mail_from == "<>"  # aiosmtpd reports MAIL FROM:<> this way
    assert bounce.rcpt_tos == ["dave@example.org"]
    report = parse_dsn(bounce.data)
    assert report.recipient("nobody@example.net").status == "5.1.1"
    (dsn,) = world.log("dsn", queue_id=queue_id)
    assert world.log("queued", queue_id=dsn["dsn_queue_id"])[0]["sender"] == "<>"


async def test_failed_bounce_is_dropped_not_bounced(world: World) -> None:
    await world.receiver("mx.example.net", MX_NET, unknown={"nobody@example.net"})
    outbound = await world.queue()
    queue_id = await send(outbound, ["nobody@example.net"], sender="<>")
    (dropped,) = world.log("dropped", queue_id=queue_id)
    assert dropped["status"] == "5.1.1"
    assert world.log("bounced") == []
    assert world.log("dsn") == []
    attempt = world.log("delivery-attempt", queue_id=queue_id)[0]
    assert any(line["text"].startswith("MAIL FROM:<>") for line in attempt["transcript"])


@pytest.mark.parametrize(
    ("fault", "connections", "verified"),
    [
        (CertificateFault.NONE, 1, [True]),
        # Not trusted: a second connection delivers over TLS without verification.
        (CertificateFault.WRONG_NAME, 2, [None, False]),
    ],
)
async def test_opportunistic_starttls(
    world: World, fault: CertificateFault, connections: int, verified: list[bool | None]
) -> None:
    _, files = issue_certificates(world.root / "tls", {"mx.tls.test": fault})
    mx = await world.receiver("mx.tls.test", MX_TLS, tls=server_context(files["mx.tls.test"]))
    outbound = await world.queue()
    queue_id = await send(outbound, ["gina@tls.test"])
    assert len(mx.received) == 1
    attempts = world.log("delivery-attempt", queue_id=queue_id)
    assert len(attempts) == connections
    assert [a["tls"]["verified"] if a["tls"] else None for a in attempts] == verified
    if fault is not CertificateFault.NONE:
        assert "CERTIFICATE_VERIFY_FAILED" in attempts[0]["text"]
        assert attempts[1]["tls_mode"] == "encrypt"


# --- misbehaving servers ---------------------------------------------------------------------


class Scripted:
    """A minimal SMTP server whose replies are given per stage; None hangs up instead.

    Stages: "banner", "EHLO", "MAIL", "RCPT", "DATA", "DOT" (after the message).
    """

    def __init__(self, hostname: str, **replies: str | None) -> None:
        self.hostname = hostname
        self.replies = replies
        self.commands: list[str] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()

    def _reply(self, stage: str, default: str) -> str | None:
        return self.replies.get(stage, default)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            await self._conversation(reader, writer)
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _conversation(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        async def say(reply: str | None) -> bool:
            if reply is None:
                return False
            writer.write(reply.encode() + b"\r\n")
            await writer.drain()
            return True

        if not await say(self._reply("banner", f"220 {self.hostname} ESMTP")):
            return
        while line := await reader.readline():
            command = line.decode().strip()
            self.commands.append(command)
            verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
            if verb == "QUIT":
                await say("221 Bye")
                return
            defaults = {"EHLO": f"250 {self.hostname}", "DATA": "354 go ahead"}
            reply = self._reply(verb, defaults.get(verb, "250 2.0.0 OK"))
            if not await say(reply):
                return
            if verb == "DATA" and reply is not None and reply.startswith("354"):
                while (await reader.readline()) not in (b".\r\n", b""):
                    pass
                if not await say(self._reply("DOT", "250 2.0.0 Ok: queued")):
                    return


async def scripted(world: World, hostname: str, address: str, **replies: str | None) -> Scripted:
    server = Scripted(hostname, **replies)
    world.connector.routes[(address, 25)] = await server.start()
    world.scripted.append(server)
    return server


async def test_refusing_banner_moves_to_the_next_mx(world: World) -> None:
    first = await scripted(world, "mx1.multi.test", MX1_MULTI, banner="554 5.7.1 go away")
    second = await world.receiver("mx2.multi.test", MX2_MULTI)
    outbound = await world.queue()
    queue_id = await send(outbound, ["erin@multi.test"])
    assert len(second.received) == 1
    assert first.commands == ["QUIT"]
    codes = [a["code"] for a in world.log("delivery-attempt", queue_id=queue_id)]
    assert codes == [554, 250]


@pytest.mark.parametrize(
    ("replies", "status", "stage_words"),
    [
        ({"MAIL": "553 5.1.8 Sender address rejected: Domain not found"}, "5.1.8", "MAIL FROM"),
        ({"DOT": "552 5.3.4 Message size exceeds fixed limit"}, "5.3.4", "end of DATA"),
        ({"DATA": "554 5.5.1 No valid recipients"}, "5.5.1", "our DATA command"),
        ({"banner": "554 no enhanced code here"}, "5.0.0", "answered:"),
    ],
    ids=["mail-from", "end-of-data", "data", "banner"],
)
async def test_permanent_replies_bounce_every_recipient(
    world: World, replies: dict[str, str], status: str, stage_words: str
) -> None:
    await scripted(world, "mx.example.net", MX_NET, **replies)
    outbound = await world.queue()
    queue_id = await send(outbound, ["bob@example.net", "carol@example.net"])
    assert {e["status"] for e in world.log("bounced", queue_id=queue_id)} == {status}
    (raw,) = world.bounces()
    report = parse_dsn(raw)
    assert [r.recipient for r in report.recipients] == ["bob@example.net", "carol@example.net"]
    assert report.recipients[0].remote_mta == "mx.example.net"
    assert stage_words in " ".join(report.explanation.split())


@pytest.mark.parametrize(
    ("replies", "status", "reason"),
    [
        (
            {"RCPT": None},
            "4.4.2",
            "lost connection with mx.example.net[{ip}] while sending RCPT TO",
        ),
        ({"banner": "421 4.7.0 mx.example.net Too many connections"}, "4.7.0", "421 4.7.0"),
        ({"RCPT": "452 4.2.2 <bob@example.net>: Mailbox full"}, "4.2.2", "452 4.2.2 <bob@"),
    ],
    ids=["hangup", "banner-421", "mailbox-full"],
)
async def test_temporary_trouble_defers(
    world: World, replies: dict[str, str | None], status: str, reason: str
) -> None:
    await scripted(world, "mx.example.net", MX_NET, **replies)
    outbound = await world.queue(retry=[30.0], lifetime=60.0)
    queue_id = await outbound.enqueue(sender=ALICE, recipients=["bob@example.net"], data=message())
    while not world.log("deferred", queue_id=queue_id):
        await asyncio.sleep(0.01)
    (deferred,) = world.log("deferred", queue_id=queue_id)
    assert deferred["status"] == status
    assert deferred["reason"].startswith(reason.format(ip=MX_NET))
    assert deferred["next_attempt_in"] == pytest.approx(30.0, abs=1.0)
    assert world.bounces() == []


async def test_a_local_recipient_without_a_mailbox_bounces_from_the_queue(world: World) -> None:
    # What a catch-all queues after accepting an unknown mailbox at RCPT (accept-then-bounce).
    outbound = await world.queue()
    queue_id = await send(outbound, ["nobody@example.com"])
    (raw,) = world.bounces()
    report = parse_dsn(raw)
    assert report.reporting_mta == RELAY_HOST
    (entry,) = report.recipients
    assert (entry.recipient, entry.status) == ("nobody@example.com", "5.1.1")
    assert entry.diagnostic_code == 'unknown user: "nobody"'
    (bounced,) = world.log("bounced", queue_id=queue_id)
    assert bounced["status"] == "5.1.1"
    assert world.log("delivered", queue_id=queue_id) == []


# --- the relay's login at its smart host ---------------------------------------------------

ISP_LOGIN = ("corp@isp.example", "isp-relay-pass")


def _smarthost(user: str | None = None, password: str | None = None) -> RoutingConfig:
    hop = NextHop(host="smarthost.example.com", port=2525, user=user, password=password)
    return RoutingConfig(smarthost=hop)


async def test_the_relay_logs_in_at_its_smarthost(world: World) -> None:
    smarthost = await world.receiver("smarthost.example.com", SMARTHOST, 2525, login=ISP_LOGIN)
    outbound = await world.queue(_smarthost(*ISP_LOGIN))
    queue_id = await send(outbound, ["dave@example.org"])
    assert [r.rcpt_tos for r in smarthost.received] == [["dave@example.org"]]
    (attempt,) = world.log("delivery-attempt", queue_id=queue_id)
    shown = "\n".join(str(line) for line in attempt["transcript"])
    assert "AUTH PLAIN ****" in shown
    assert "235 2.7.0 Authentication successful" in shown
    assert ISP_LOGIN[1] not in str(world.log())  # the password in no event


async def test_without_its_login_the_smarthost_bounces_the_mail(world: World) -> None:
    smarthost = await world.receiver("smarthost.example.com", SMARTHOST, 2525, login=ISP_LOGIN)
    outbound = await world.queue(_smarthost())
    await send(outbound, ["dave@example.org"])
    assert smarthost.received == []
    (entry,) = parse_dsn(world.bounces()[0]).recipients
    assert entry.status == "5.7.0"
    assert entry.diagnostic_code == "530 5.7.0 Authentication required"


async def test_a_wrong_login_defers_like_postfix_soft_bounce(world: World) -> None:
    smarthost = await world.receiver("smarthost.example.com", SMARTHOST, 2525, login=ISP_LOGIN)
    outbound = await world.queue(
        _smarthost("corp@isp.example", "old-pass"), retry=[30.0], lifetime=60.0
    )
    queue_id = await outbound.enqueue(sender=ALICE, recipients=["dave@example.org"], data=message())
    while not world.log("deferred", queue_id=queue_id):
        await asyncio.sleep(0.01)
    (deferred,) = world.log("deferred", queue_id=queue_id)
    assert deferred["status"] == "4.7.8"  # aiosmtpd's 535 5.7.8, its class made temporary
    assert deferred["reason"].startswith(
        f"SASL authentication failed; server smarthost.example.com[{SMARTHOST}] said: 535"
    )
    assert smarthost.received == []
    assert world.bounces() == []
    assert "old-pass" not in str(world.log())


async def test_a_smarthost_without_auth_gets_the_mail_without_login(world: World) -> None:
    smarthost = await world.receiver("smarthost.example.com", SMARTHOST, 2525)
    outbound = await world.queue(_smarthost(*ISP_LOGIN))
    queue_id = await send(outbound, ["dave@example.org"])
    assert [r.rcpt_tos for r in smarthost.received] == [["dave@example.org"]]
    (attempt,) = world.log("delivery-attempt", queue_id=queue_id)
    assert "AUTH" not in "\n".join(str(line) for line in attempt["transcript"])
