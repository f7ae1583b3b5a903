"""Server-side faults on real sockets: the greeting (tarpit, slow banner, 554, rate limit),
a HELO-only server, STARTTLS broken, a TLS 1.0/1.1-only listener, a connection dropped
during DATA, the recipient limit and send-as.

Clients come through a PROXY header from an address that is not the server's own
(`OUTSIDE`), as in the local backend; replies are compared whole, against `lab.replies`.
"""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
import time
import warnings
from typing import Any

import pytest

from lab.replies import (
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S421_TOO_MANY,
    S452_TOO_MANY_RECIPIENTS,
    S454_TLS_UNAVAILABLE,
    S502_EHLO_NOT_IMPLEMENTED,
    S502_NOT_RECOGNIZED,
    S550_SEND_AS_DENIED,
    S554_NO_SERVICE,
)
from lab.scenario.model import AuthPolicy, ListenerTls, TlsVersions
from lab.smtp.tls import client_tls_context
from tests.nodes.conftest import (
    HOSTNAME,
    LOCALHOST,
    LabCertificates,
    LabSMTP,
    MailServerUnderTest,
    StartServer,
    listener,
    proxy_header,
)

OUTSIDE = "10.213.2.77"
OTHER = "10.213.2.78"
SELF = "10.213.1.11"  # the server's own address in these tests
BANNER = f"220 {HOSTNAME} ESMTP smtp-lab\r\n".encode()
ALICE = ("alice", "s3cret-Alice")
MESSAGE = b"Subject: test\r\nMessage-ID: <faults-1@remote.example>\r\n\r\nHello.\r\n"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def start(mail_server: StartServer, **overrides: Any) -> MailServerUnderTest:
    """A server behind PROXY headers that knows its own address (health checks are spared)."""
    fields: dict[str, Any] = {"proxy_protocol": True, "fault_exempt": [SELF]}
    fields.update(overrides)
    return await mail_server(**fields)


async def connect(port: int, source: str = OUTSIDE) -> Streams:
    """A connection as from `source`: the PROXY header goes first."""
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    writer.write(proxy_header(source, port))
    return reader, writer


async def line(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    return await asyncio.wait_for(reader.readline(), timeout)


async def command(streams: Streams, text: bytes) -> bytes:
    """Send one command, return the last line of the reply."""
    reader, writer = streams
    writer.write(text + b"\r\n")
    while True:
        reply = await line(reader)
        if reply[3:4] != b"-":
            return reply


async def ehlo(streams: Streams) -> list[bytes]:
    """EHLO; every line of the reply."""
    reader, writer = streams
    writer.write(b"EHLO client.example\r\n")
    lines = [await line(reader)]
    while lines[-1][3:4] == b"-":
        lines.append(await line(reader))
    return lines


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def wire(reply: str) -> bytes:
    return reply.encode() + b"\r\n"


def legacy_client_context() -> ssl.SSLContext:
    """A client from before 2020 that still speaks TLS 1.0/1.1 (certificate checks off)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    return context


# --- the greeting ------------------------------------------------------------------------------


class TestGreeting:
    async def test_tarpit_accepts_and_never_greets(self, mail_server: StartServer) -> None:
        server = await start(mail_server, tarpit=True)
        reader, writer = await connect(server.port())
        with pytest.raises(TimeoutError):
            await line(reader, timeout=0.3)
        (fault,) = server.events("fault")
        assert (fault["fault"], fault["client"], fault["port"]) == ("tarpit", OUTSIDE, 25)
        # Stopping the server ends the silent session too.
        await server.running.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)

    async def test_tarpit_spares_the_server_itself_and_loopback(
        self, mail_server: StartServer
    ) -> None:
        proxied = await start(mail_server, tarpit=True)
        reader, writer = await connect(proxied.port(), source=SELF)
        assert await line(reader) == BANNER
        await close(writer)
        direct = await mail_server(tarpit=True)  # no PROXY header: the peer is 127.0.0.1
        reader, writer = await asyncio.open_connection(LOCALHOST, direct.port())
        assert await line(reader) == BANNER
        await close(writer)

    async def test_banner_delay_holds_the_greeting_back(self, mail_server: StartServer) -> None:
        server = await start(mail_server, banner_delay=0.3)
        began = time.monotonic()
        reader, writer = await connect(server.port())
        assert await line(reader) == BANNER
        assert time.monotonic() - began >= 0.3
        assert await command((reader, writer), b"NOOP") == b"250 OK\r\n"
        await close(writer)
        (fault,) = server.events("fault")
        assert (fault["fault"], fault["seconds"]) == ("banner-delay", 0.3)

    async def test_no_service_greets_with_554_and_hangs_up(self, mail_server: StartServer) -> None:
        server = await start(mail_server, no_service=True)
        reader, writer = await connect(server.port())
        assert await line(reader) == wire(S554_NO_SERVICE(hostname=HOSTNAME))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        (event,) = server.events("command")
        assert (event["verb"], event["code"], event["decision"]) == ("connect", 554, "no-service")

    async def test_rate_limit_refuses_the_next_connection_from_one_address(
        self, mail_server: StartServer
    ) -> None:
        server = await start(mail_server, rate_limit={"connections": 2, "per": 60.0})
        sessions = [await connect(server.port()) for _ in range(2)]
        for reader, _ in sessions:
            assert await line(reader) == BANNER
        reader, writer = await connect(server.port())
        assert await line(reader) == wire(S421_TOO_MANY(hostname=HOSTNAME))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        # Another client has its own allowance.
        other_reader, other_writer = await connect(server.port(), source=OTHER)
        assert await line(other_reader) == BANNER
        for _, session_writer in [*sessions, (other_reader, other_writer)]:
            await close(session_writer)
        refused = [e for e in server.events("command") if e["verb"] == "connect"]
        assert [(e["client"], e["code"], e["decision"]) for e in refused] == [
            (OUTSIDE, 421, "rate-limited")
        ]

    async def test_rate_limit_window_slides(self, mail_server: StartServer) -> None:
        server = await start(mail_server, rate_limit={"connections": 1, "per": 0.3})
        first_reader, first_writer = await connect(server.port())
        assert await line(first_reader) == BANNER
        refused_reader, refused_writer = await connect(server.port())
        assert (await line(refused_reader)).startswith(b"421 4.7.0 ")
        await asyncio.sleep(0.35)
        reader, writer = await connect(server.port())
        assert await line(reader) == BANNER
        for each in (first_writer, refused_writer, writer):
            await close(each)

    async def test_rate_limit_only_on_the_listeners_it_names(
        self, mail_server: StartServer
    ) -> None:
        server = await start(
            mail_server,
            listeners=[listener(25), listener(2525)],
            rate_limit={"connections": 1, "per": 60.0, "ports": [25]},
        )
        writers = []
        for port, expected in ((25, b"220 "), (25, b"421 "), (2525, b"220 "), (2525, b"220 ")):
            reader, writer = await connect(server.port(port))
            assert (await line(reader)).startswith(expected)
            writers.append(writer)
        for writer in writers:
            await close(writer)


# --- HELO-only ---------------------------------------------------------------------------------


class TestHeloOnly:
    async def test_ehlo_refused_helo_works_no_extensions(self, mail_server: StartServer) -> None:
        server = await start(
            mail_server, esmtp=False, listeners=[listener(25, tls=ListenerTls.STARTTLS)]
        )
        streams = await connect(server.port())
        assert await line(streams[0]) == BANNER
        assert await ehlo(streams) == [wire(S502_EHLO_NOT_IMPLEMENTED())]
        assert await command(streams, b"HELO client.example") == f"250 {HOSTNAME}\r\n".encode()
        assert await command(streams, b"STARTTLS") == wire(S502_NOT_RECOGNIZED())
        assert await command(streams, b"MAIL FROM:<a@remote.example>") == wire(
            S250_SENDER_OK(address="a@remote.example")
        )
        await close(streams[1])
        verbs = [(e["verb"], e["code"]) for e in server.events("command")]
        assert verbs[:2] == [("ehlo", 502), ("starttls", 502)]

    async def test_a_mail_program_falls_back_and_delivers(self, mail_server: StartServer) -> None:
        server = await start(mail_server, esmtp=False)

        def conversation() -> dict[str, tuple[int, bytes]]:
            with LabSMTP(server.port(), proxy_source=OUTSIDE) as client:
                return client.sendmail("a@remote.example", ["alice@example.com"], MESSAGE)

        assert await asyncio.to_thread(conversation) == {}
        (stored,) = server.store.messages("alice@example.com")
        # A HELO session is plain SMTP in the trace header (RFC 3848).
        assert b"with SMTP id" in stored.data


# --- STARTTLS broken, legacy TLS ---------------------------------------------------------------


class TestTlsFaults:
    async def test_starttls_advertised_but_answered_454(self, mail_server: StartServer) -> None:
        broken = listener(587, tls=ListenerTls.STARTTLS).model_copy(
            update={"starttls_broken": True}
        )
        server = await start(mail_server, listeners=[broken])
        streams = await connect(server.port(587))
        assert await line(streams[0]) == BANNER
        assert b"250-STARTTLS\r\n" in await ehlo(streams)
        assert await command(streams, b"STARTTLS") == wire(S454_TLS_UNAVAILABLE())
        # The session goes on in clear text.
        assert await command(streams, b"NOOP") == b"250 OK\r\n"
        await close(streams[1])
        starttls = [e for e in server.events("command") if e["verb"] == "starttls"]
        assert [e["code"] for e in starttls] == [454]

    async def test_legacy_starttls_fails_a_modern_client_with_protocol_version(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await start(mail_server, listeners=[legacy(587, ListenerTls.STARTTLS)])
        streams = await connect(server.port(587))
        assert await line(streams[0]) == BANNER
        await ehlo(streams)
        assert await command(streams, b"STARTTLS") == b"220 Ready to start TLS\r\n"
        # The mail program's own context (lab.smtp.tls), as it would really be built.
        context = client_tls_context(verify=True, ca_file=lab_certificates.ca_file)
        with pytest.raises(ssl.SSLError) as failure:
            await streams[1].start_tls(context, server_hostname=HOSTNAME)
        assert failure.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
        streams[1].transport.abort()
        (event,) = server.events("tls-failed")
        assert (event["port"], event["legacy"]) == (587, True)
        assert event["error"] == "UNSUPPORTED_PROTOCOL"

    async def test_legacy_starttls_serves_a_legacy_client(self, mail_server: StartServer) -> None:
        server = await start(mail_server, listeners=[legacy(587, ListenerTls.STARTTLS)])
        streams = await connect(server.port(587))
        await line(streams[0])
        await ehlo(streams)
        await command(streams, b"STARTTLS")
        await streams[1].start_tls(legacy_client_context(), server_hostname=HOSTNAME)
        assert streams[1].get_extra_info("ssl_object").version() in ("TLSv1", "TLSv1.1")
        # A new EHLO inside TLS no longer offers STARTTLS.
        assert b"250-STARTTLS\r\n" not in await ehlo(streams)
        await close(streams[1])
        (session,) = server.events("session")
        assert session["client"] == OUTSIDE

    @pytest.mark.parametrize("proxy", [True, False], ids=["behind-proxy", "direct"])
    async def test_legacy_implicit_tls(
        self, mail_server: StartServer, lab_certificates: LabCertificates, proxy: bool
    ) -> None:
        server = await mail_server(
            proxy_protocol=proxy, listeners=[legacy(465, ListenerTls.IMPLICIT)]
        )
        port = server.port(465)

        async def open_tls(context: ssl.SSLContext) -> Streams:
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            if proxy:
                writer.write(proxy_header(OUTSIDE, 465))
            await writer.start_tls(context, server_hostname=HOSTNAME)
            return reader, writer

        modern = client_tls_context(verify=True, ca_file=lab_certificates.ca_file)
        with pytest.raises(ssl.SSLError) as failure:
            await open_tls(modern)
        assert failure.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION"
        reader, writer = await open_tls(legacy_client_context())
        assert await line(reader) == BANNER
        await close(writer)
        assert [e["legacy"] for e in server.events("tls-failed")] == [True]


def legacy(port: int, tls: ListenerTls) -> Any:
    return listener(port, tls=tls).model_copy(update={"tls_versions": TlsVersions.LEGACY})


# --- DATA, recipients, send-as -----------------------------------------------------------------


class TestSession:
    async def test_drop_during_data_closes_without_a_reply(self, mail_server: StartServer) -> None:
        server = await start(mail_server, drop_during_data=True)
        streams = await connect(server.port())
        await line(streams[0])
        await ehlo(streams)
        await command(streams, b"MAIL FROM:<a@remote.example>")
        await command(streams, b"RCPT TO:<alice@example.com>")
        assert await command(streams, b"DATA") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
        streams[1].write(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n")
        assert await asyncio.wait_for(streams[0].read(), 5) == b""
        await close(streams[1])
        assert server.store.messages("alice@example.com") == []
        (fault,) = server.events("fault")
        assert fault["fault"] == "dropped-during-data"
        assert fault["received"] > 0

    async def test_drop_during_data_seen_by_a_mail_program(self, mail_server: StartServer) -> None:
        server = await start(mail_server, drop_during_data=True)

        def conversation() -> None:
            with LabSMTP(server.port(), proxy_source=OUTSIDE) as client:
                client.sendmail("a@remote.example", ["alice@example.com"], MESSAGE * 100)

        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)):
            await asyncio.to_thread(conversation)

    async def test_the_recipient_limit(self, mail_server: StartServer) -> None:
        server = await start(
            mail_server,
            max_recipients=2,
            mailboxes={f"u{i}@example.com": "active" for i in range(3)},
        )
        streams = await connect(server.port())
        await line(streams[0])
        await ehlo(streams)
        await command(streams, b"MAIL FROM:<a@remote.example>")
        replies = [await command(streams, f"RCPT TO:<u{i}@example.com>".encode()) for i in range(3)]
        assert replies == [
            wire(S250_RECIPIENT_OK(address="u0@example.com")),
            wire(S250_RECIPIENT_OK(address="u1@example.com")),
            wire(S452_TOO_MANY_RECIPIENTS()),
        ]
        await command(streams, b"DATA")
        streams[1].write(MESSAGE + b".\r\n")
        assert (await line(streams[0])).startswith(b"250 2.0.0 Ok: queued as ")
        await close(streams[1])
        assert [len(server.store.messages(f"u{i}@example.com")) for i in range(3)] == [1, 1, 0]
        decisions = [e["decision"] for e in server.events("command") if e["verb"] == "rcpt"]
        assert decisions == ["local", "local", "too-many-recipients"]

    @pytest.mark.parametrize(
        ("login", "sender", "allowed"),
        [
            ("alice", "alice@example.com", True),  # a bare login: login@hosted-domain
            ("alice", "ALICE@example.com", True),
            ("alice", "bob@example.com", False),
            ("alice", "alice@elsewhere.example", False),
            ("alice@example.com", "alice@example.com", True),  # a login that is an address
            ("alice@example.com", "sales@example.com", False),
        ],
    )
    async def test_send_as_enforced_for_authenticated_users(
        self, mail_server: StartServer, login: str, sender: str, allowed: bool
    ) -> None:
        server = await start(
            mail_server,
            role="relay",
            send_as="enforce",
            users={login: "pw"},
            listeners=[listener(587, auth=AuthPolicy.REQUIRED)],
        )

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port(587), proxy_source=OUTSIDE) as client:
                client.login(login, "pw")
                return client.mail(sender)

        code, text = await asyncio.to_thread(conversation)
        expected = S250_SENDER_OK(address=sender) if allowed else S550_SEND_AS_DENIED()
        assert f"{code} {text.decode()}" == expected
        if not allowed:
            (event,) = [e for e in server.events("command") if e["verb"] == "mail"]
            assert (event["decision"], event["user"]) == ("send-as-denied", login)

    async def test_send_as_does_not_apply_without_authentication(
        self, mail_server: StartServer
    ) -> None:
        server = await start(mail_server, role="relay", send_as="enforce")
        streams = await connect(server.port())
        await line(streams[0])
        await ehlo(streams)
        assert await command(streams, b"MAIL FROM:<anyone@example.com>") == wire(
            S250_SENDER_OK(address="anyone@example.com")
        )
        await close(streams[1])
