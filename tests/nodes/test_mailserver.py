"""The relay and mx servers on real sockets: listeners and their lifecycle, SIZE, session
events, and bad input.

Replies are compared whole, against `lab.replies`: a reply's text is part of
what the lab teaches.
"""

from __future__ import annotations

import asyncio

import pytest

from lab.nodes.tls import client_context
from lab.replies import S552_TOO_BIG
from lab.scenario.model import AuthPolicy, ListenerTls
from tests.nodes.conftest import (
    ALICE,
    HOSTNAME,
    LOCALHOST,
    MESSAGE,
    OUTSIDE_CLIENT,
    PERMITTED_CLIENT,
    LabCertificates,
    LabSMTP,
    LabSMTPSSL,
    StartServer,
    close,
    command,
    expect,
    listener,
    proxy_header,
    raw_session,
    talk,
)

# --- listeners ----------------------------------------------------------------------------


class TestListeners:
    async def test_every_listener_greets(self, mail_server: StartServer) -> None:
        server = await mail_server(
            listeners=[
                listener(25),
                listener(587, tls=ListenerTls.STARTTLS, auth=AuthPolicy.REQUIRED),
                listener(2525),
            ]
        )
        assert set(server.running.ports) == {25, 587, 2525}
        assert len(set(server.running.ports.values())) == 3
        for port in server.running.ports.values():
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            assert await reader.readline() == f"220 {HOSTNAME} ESMTP smtp-lab\r\n".encode()
            await close(writer)

    async def test_stop_drops_open_sessions_and_is_idempotent(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        await server.running.stop()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        await server.running.stop()
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(LOCALHOST, server.port())

    async def test_implicit_tls(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            listeners=[
                listener(465, tls=ListenerTls.IMPLICIT, auth=AuthPolicy.OFFERED),
            ]
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[dict[str, str], tuple[int, bytes]]:
            with LabSMTPSSL(server.port(465), context=context) as client:
                client.ehlo()
                features = dict(client.esmtp_features)
                return features, client.login(*ALICE)

        features, login = await talk(conversation)
        # Encrypted from the first byte: AUTH is offered at once, STARTTLS is not.
        assert "starttls" not in features
        assert features["auth"].split() == ["CRAM-MD5", "LOGIN", "PLAIN"]
        assert login[0] == 235

    async def test_implicit_tls_behind_proxy_header(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        # The local backend sends the PROXY header before the client's TLS handshake.
        server = await mail_server(
            proxy_protocol=True,
            listeners=[listener(465, tls=ListenerTls.IMPLICIT, auth=AuthPolicy.OFFERED)],
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[int, bytes]:
            with LabSMTPSSL(
                server.port(465), context=context, proxy_source=PERMITTED_CLIENT
            ) as client:
                return client.noop()

        assert (await talk(conversation))[0] == 250
        (session,) = server.events("session")
        assert session["client"] == PERMITTED_CLIENT
        assert session["tls"] is True
        assert session["port"] == 465

    async def test_implicit_listener_needs_a_certificate(self, mail_server: StartServer) -> None:
        with pytest.raises(ValueError, match="no certificate"):
            await mail_server(tls=None, listeners=[listener(465, tls=ListenerTls.IMPLICIT)])


# --- SIZE -------------------------------------------------------------------------------


class TestSize:
    async def test_size_advertised(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)

        def conversation() -> dict[str, str]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return dict(client.esmtp_features)

        assert (await talk(conversation))["size"] == "2000"

    async def test_size_not_advertised_without_a_limit(self, mail_server: StartServer) -> None:
        server = await mail_server()

        def conversation() -> dict[str, str]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return dict(client.esmtp_features)

        assert "size" not in await talk(conversation)

    async def test_mail_size_over_limit(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)

        def conversation() -> tuple[int, bytes]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                return client.mail("sender@remote.example", ["SIZE=2001"])

        expect(await talk(conversation), S552_TOO_BIG)

    async def test_oversized_data(self, mail_server: StartServer) -> None:
        server = await mail_server(max_size=2000)
        body = MESSAGE + b"x" * 60 + b"\r\n"
        big = body * 40

        def conversation() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            with LabSMTP(server.port()) as client:
                client.ehlo()
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                too_big = client.data(big)
                # The session goes on: a small message is still accepted.
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                return too_big, client.data(MESSAGE)

        too_big, small = await talk(conversation)
        expect(too_big, S552_TOO_BIG)
        assert small[0] == 250
        assert [m.data.endswith(MESSAGE) for m in server.store.messages("alice@example.com")] == [
            True
        ]


# --- events ------------------------------------------------------------------------------


class TestEvents:
    async def test_session_and_rcpt_decisions(self, mail_server: StartServer) -> None:
        server = await mail_server(proxy_protocol=True)

        def conversation() -> None:
            with LabSMTP(server.port(), proxy_source=OUTSIDE_CLIENT) as client:
                client.mail("sender@remote.example")
                client.rcpt("alice@example.com")
                client.rcpt("nobody@example.com")
                client.rcpt("friend@elsewhere.example")

        await talk(conversation)
        (session,) = server.events("session")
        assert session["proxied_peer"] == OUTSIDE_CLIENT
        assert session["peer"].startswith("127.0.0.1:")
        assert session["port"] == 25
        rcpts = [e for e in server.events("command") if e["verb"] == "rcpt"]
        assert [(e["address"], e["decision"], e["code"]) for e in rcpts] == [
            ("alice@example.com", "local", 250),
            ("nobody@example.com", "user-unknown", 550),
            ("friend@elsewhere.example", "relay-denied", 554),
        ]
        assert {e["client"] for e in rcpts} == {OUTSIDE_CLIENT}


# --- bad input ---------------------------------------------------------------------------


class TestBadInput:
    async def test_junk_lines_get_errors_and_the_session_goes_on(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        assert (await command(reader, writer, b"\xff\xfe\x00\x01garbage")).startswith(b"500 ")
        assert (await command(reader, writer, b"")).startswith(b"500 ")
        assert (await command(reader, writer, b"MAIL FROM:<<<")).startswith(b"5")
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)

    async def test_overlong_line(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        reply = await command(reader, writer, b"NOOP " + b"x" * 5000)
        assert reply == b"500 Command line too long\r\n"
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)

    async def test_server_answers_the_next_client(self, mail_server: StartServer) -> None:
        server = await mail_server()
        reader, writer = await raw_session(server.port())
        for _ in range(5):  # too many unknown commands: the server hangs up
            await command(reader, writer, b"BOGUS")
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        # A client vanishing in the middle of DATA loses its message, nothing else.
        reader, writer = await raw_session(server.port())
        for text in (b"EHLO x", b"MAIL FROM:<a@b.example>", b"RCPT TO:<alice@example.com>"):
            assert (await command(reader, writer, text)).startswith(b"250 ")
        assert (await command(reader, writer, b"DATA")).startswith(b"354 ")
        writer.write(b"Subject: half\r\n")
        await close(writer)
        reader, writer = await raw_session(server.port())
        assert (await command(reader, writer, b"NOOP")).startswith(b"250 ")
        await close(writer)
        assert server.store.messages("alice@example.com") == []

    async def test_bad_proxy_header_closes_only_that_connection(
        self, mail_server: StartServer, lab_certificates: LabCertificates
    ) -> None:
        server = await mail_server(
            proxy_protocol=True,
            listeners=[listener(25), listener(465, tls=ListenerTls.IMPLICIT)],
        )
        for port in (server.port(25), server.port(465)):
            reader, writer = await asyncio.open_connection(LOCALHOST, port)
            writer.write(b"HELLO THERE\r\n")
            assert await asyncio.wait_for(reader.read(), 5) == b""
            await close(writer)
        reader, writer = await asyncio.open_connection(LOCALHOST, server.port(25))
        writer.write(proxy_header(PERMITTED_CLIENT, 25))
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ")
        await close(writer)
        context = client_context(lab_certificates.ca_file, verify=True)

        def implicit() -> tuple[int, bytes]:
            with LabSMTPSSL(
                server.port(465), context=context, proxy_source=PERMITTED_CLIENT
            ) as client:
                return client.noop()

        assert (await talk(implicit))[0] == 250
