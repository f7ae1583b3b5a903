"""Fixtures for node tests: lab certificates, mail servers on real sockets, SMTP clients
and the helpers of their conversations.

Mail servers run in the test's own event loop (as in the local backend);
the blocking `smtplib` clients run in a worker thread (`asyncio.to_thread`)
so that the loop keeps serving while they talk.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.net import DirectConnector
from lab.nodes import dns
from lab.nodes.config import (
    DnsConfig,
    DnsRecordConfig,
    ListenerConfig,
    MailServerConfig,
    ResolverConfig,
    TlsFiles,
)
from lab.nodes.events import EventLog
from lab.nodes.mailserver import server
from lab.nodes.mailserver.store import MailStore
from lab.nodes.tls import issue_certificates
from lab.replies import Reply
from lab.scenario.model import AuthPolicy, CertificateFault, ListenerTls

HOSTNAME = "mx.example.com"
FAULTY = {
    "expired.example.com": CertificateFault.EXPIRED,
    "misnamed.example.com": CertificateFault.WRONG_NAME,
    "selfsigned.example.com": CertificateFault.SELF_SIGNED,
}
LOCALHOST = "127.0.0.1"
ALICE = ("alice", "s3cret-Alice")
MESSAGE = (
    b"From: sender@remote.example\r\n"
    b"To: alice@example.com\r\n"
    b"Subject: test\r\n"
    b"Message-ID: <test-1@remote.example>\r\n"
    b"\r\n"
    b"Hello.\r\n"
)
PERMITTED_CLIENT = "10.213.1.50"  # inside PERMITTED_NETWORK
OUTSIDE_CLIENT = "10.213.2.77"
PERMITTED_NETWORK = "10.213.1.0/24"


@dataclass(frozen=True)
class LabCertificates:
    """The lab CA and every server's files (one good, one per fault)."""

    ca_file: Path
    files: dict[str, TlsFiles]


@pytest.fixture(scope="session")
def lab_certificates(tmp_path_factory: pytest.TempPathFactory) -> LabCertificates:
    """Issued once per session: key generation is the slow part."""
    ca_file, files = issue_certificates(
        tmp_path_factory.mktemp("tls"), {HOSTNAME: CertificateFault.NONE, **FAULTY}
    )
    return LabCertificates(ca_file, files)


def listener(
    port: int,
    *,
    tls: ListenerTls = ListenerTls.NONE,
    auth: AuthPolicy = AuthPolicy.OFF,
    require_tls: bool = False,
    auth_requires_tls: bool = False,
) -> ListenerConfig:
    """A listener on an ephemeral port, known in the lab as `port`."""
    return ListenerConfig(
        port=port,
        bind_port=0,
        tls=tls,
        auth=auth,
        require_tls=require_tls,
        auth_requires_tls=auth_requires_tls,
    )


@dataclass
class FakeQueue:
    """Records what the inbound side hands to the relay's queue (the real one is tested apart)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    flushed: list[str | None] = field(default_factory=list)
    started: bool = False
    stopped: bool = False

    def flush(self, domain: str | None = None) -> int:
        self.flushed.append(domain)
        return len(self.calls)

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def enqueue(
        self,
        *,
        sender: str,
        recipients: list[str],
        data: bytes,
        client_address: str,
        helo: str,
        authenticated_as: str | None,
    ) -> str:
        self.calls.append(
            {
                "sender": sender,
                "recipients": recipients,
                "data": data,
                "client_address": client_address,
                "helo": helo,
                "authenticated_as": authenticated_as,
            }
        )
        return f"Q{len(self.calls):04d}"


@dataclass
class MailServerUnderTest:
    """A started server and what a test needs to talk to it and inspect it."""

    running: server.RunningMailServer
    config: MailServerConfig
    queue: FakeQueue

    def port(self, lab_port: int = 25) -> int:
        """The real port of lab port `lab_port`."""
        return self.running.ports[lab_port]

    @property
    def store(self) -> MailStore:
        """The server's mailboxes, read as the runtime reads them."""
        return MailStore(self.config.data_dir / server.MAILBOXES_DIR)

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Events logged so far, optionally only those of one kind."""
        from lab.nodes.events import read_events

        events = read_events(self.config.data_dir)
        return [event for event in events if kind is None or event["event"] == kind]


StartServer = Callable[..., Awaitable[MailServerUnderTest]]


@pytest.fixture
async def mail_server(
    tmp_path: Path, lab_certificates: LabCertificates
) -> AsyncIterator[StartServer]:
    """Factory: `await mail_server(role="mx", **config fields)`; servers stop at teardown.

    Defaults: an mx for example.com on 127.0.0.1 with one plain listener
    (lab port 25), the lab certificate, users alice/bob.
    """
    started: list[server.RunningMailServer] = []

    async def start(**overrides: Any) -> MailServerUnderTest:
        fields: dict[str, Any] = {
            "name": f"node{len(started)}",
            "data_dir": tmp_path / f"node{len(started)}",
            "listen_host": LOCALHOST,
            "role": "mx",
            "hostname": HOSTNAME,
            "listeners": [listener(25)],
            "tls": lab_certificates.files[HOSTNAME],
            "auth_mechanisms": ["PLAIN", "LOGIN", "CRAM-MD5"],
            "users": {"alice": "s3cret-Alice", "bob": "hunter2-Bob"},
            "domains": ["example.com"],
            "mailboxes": {"alice@example.com": "active", "bob@example.com": "active"},
        }
        fields.update(overrides)
        config = MailServerConfig(**fields)
        queue = FakeQueue()

        def factory(
            config: MailServerConfig, *, store: MailStore, connector: Any, events: EventLog
        ) -> FakeQueue:
            return queue

        running = await server.start(
            config,
            connector=DirectConnector(),
            queue_factory=factory if config.role == "relay" else None,
        )
        started.append(running)
        return MailServerUnderTest(running, config, queue)

    yield start
    for running in started:
        await running.stop()


def proxy_header(source: str, port: int) -> bytes:
    """The PROXY v1 line the local backend sends ahead of every connection."""
    return f"PROXY TCP4 {source} 10.213.0.10 40001 {port}\r\n".encode()


class _GreetFirst(smtplib.SMTP):
    """`mail()` greets first when nobody did, as `sendmail()` does (plain `mail()` does not)."""

    def mail(self, sender: str, options: Any = ()) -> tuple[int, bytes]:
        self.ehlo_or_helo_if_needed()
        return super().mail(sender, options)


class LabSMTP(_GreetFirst):
    """smtplib's client, optionally behind a PROXY header, verifying TLS for `tls_name`."""

    def __init__(
        self, port: int, *, proxy_source: str | None = None, tls_name: str = HOSTNAME
    ) -> None:
        self.proxy_source = proxy_source
        self.tls_name = tls_name
        super().__init__(LOCALHOST, port, timeout=5)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = socket.create_connection((host, port), timeout)
        if self.proxy_source:
            sock.sendall(proxy_header(self.proxy_source, port))
        return sock

    def connect(self, host: str = LOCALHOST, port: int = 0, source_address: Any = None) -> Any:
        reply = super().connect(host, port, source_address)
        # smtplib checks the certificate against the host it connected to (127.0.0.1).
        self._host = self.tls_name
        return reply


class LabSMTPSSL(smtplib.SMTP_SSL, _GreetFirst):
    """Implicit TLS (port 465), the PROXY header (if any) going ahead of the handshake."""

    def __init__(
        self,
        port: int,
        *,
        context: ssl.SSLContext,
        proxy_source: str | None = None,
        tls_name: str = HOSTNAME,
    ) -> None:
        self.proxy_source = proxy_source
        self.tls_name = tls_name
        super().__init__(LOCALHOST, port, timeout=5, context=context)

    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        sock = socket.create_connection((host, port), timeout)
        try:
            if self.proxy_source:
                sock.sendall(proxy_header(self.proxy_source, port))
            return self.context.wrap_socket(sock, server_hostname=self.tls_name)
        except BaseException:
            sock.close()
            raise


# --- conversations ----------------------------------------------------------------------

T = TypeVar("T")


async def talk(conversation: Callable[[], T]) -> T:
    """Run a blocking smtplib conversation while the server keeps running in this loop."""
    return await asyncio.to_thread(conversation)


def line(reply: tuple[int, bytes]) -> str:
    """An smtplib reply as the one line the server sent."""
    code, text = reply
    return f"{code} {text.decode()}"


def expect(reply: tuple[int, bytes], expected: Reply, **values: str) -> None:
    """Assert the whole reply line."""
    assert line(reply) == expected(**values)


async def raw_session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A plain connection whose banner has been read."""
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    banner = await asyncio.wait_for(reader.readline(), 5)
    assert banner.startswith(b"220 ")
    return reader, writer


async def command(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, text: bytes) -> bytes:
    """Send one raw line and read the reply (the last line of a multi-line one)."""
    writer.write(text + b"\r\n")
    while True:
        reply = await asyncio.wait_for(reader.readline(), 5)
        if reply[3:4] != b"-":
            return reply


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def relay_config(**overrides: Any) -> dict[str, Any]:
    """A relay for example.com: relays for authenticated users and PERMITTED_NETWORK."""
    fields: dict[str, Any] = {
        "role": "relay",
        "proxy_protocol": True,
        "listeners": [listener(25, auth=AuthPolicy.OFFERED)],
        "permit_relay": {"authenticated": True, "networks": [PERMITTED_NETWORK]},
    }
    fields.update(overrides)
    return fields


@contextlib.asynccontextmanager
async def lab_dns_server(
    directory: Path,
    zones: list[str],
    records: list[DnsRecordConfig],
    faults: dict[str, str] | None = None,
) -> AsyncIterator[ResolverConfig]:
    """A lab DNS node on 127.0.0.1 serving `records`; the resolver settings that ask it."""
    config = DnsConfig(
        name="dns",
        data_dir=directory / "dns",
        listen_host=LOCALHOST,
        port=0,
        zones=zones,
        records=records,
        faults=faults or {},
    )
    running = await dns.start(config)
    try:
        yield ResolverConfig(nameserver=LOCALHOST, port=running.port, timeout=1.0)
    finally:
        await running.stop()
