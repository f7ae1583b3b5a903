"""The mail program (`send_mail`) against real servers on 127.0.0.1: outcomes, stages,
transcripts.

Every test talks over real sockets to aiosmtpd (or to a scripted asyncio peer
for misbehaviour aiosmtpd cannot produce). Only the connect timeout uses a
fake connector: a real dropped SYN is the router's business, tested elsewhere.
AUTH and TLS failures have their own modules (`test_auth.py`, `test_tls.py`).
"""

from __future__ import annotations

import asyncio
import errno

import pytest

from lab.net import ConnectTimeout, HostUnreachable
from lab.scenario.model import Outcome, Stage
from lab.smtp.transcript import Direction
from tests.smtp.conftest import (
    CA_SUBJECT,
    HOST,
    OTHER_SUBJECT,
    SERVER_NAME,
    SERVER_SUBJECT,
    Handler,
    Pki,
    Script,
    StartServer,
    authenticator,
)
from tests.smtp.helpers import (
    HELO,
    PASSWORD,
    RECIPIENT,
    SENDER,
    FailingConnector,
    ScriptedServer,
    assert_no_secrets,
    assert_stopped,
    localhost,
    make_settings,
    said,
    send,
)

# --- the mail program: success -------------------------------------------------------------


async def test_plain_delivery_records_everything(smtp_server: StartServer) -> None:
    server = smtp_server()
    result = await send(make_settings(server.port))

    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.text == "2.0.0 Ok: queued as TEST1"
    assert result.accepted_by == "mx.lab.test"
    assert result.server_address == HOST
    assert result.accepted_recipients == [RECIPIENT]
    assert result.rejected_recipients == {}
    client = said(result, Direction.CLIENT)
    assert client[0] == f"EHLO {HELO}"
    assert client[1] == f"MAIL FROM:<{SENDER}> SIZE=600"
    assert client[2] == f"RCPT TO:<{RECIPIENT}>"
    assert client[3] == "DATA"
    assert f"Message-ID: {result.message_id}" in client
    assert client[-2:] == [".", "QUIT"]
    server_lines = said(result, Direction.SERVER)
    assert server_lines[0].startswith("220 mx.lab.test")
    assert "250-SIZE 33554432" in server_lines
    assert server_lines[-1].startswith("221")
    notes = said(result, Direction.NOTE)
    assert notes[0].startswith(f"connected to {HOST}:{server.port} in ")
    assert set(result.timings) == {
        Stage.CONNECT,
        Stage.BANNER,
        Stage.EHLO,
        Stage.MAIL,
        Stage.RCPT,
        Stage.DATA,
    }
    assert all(seconds >= 0 for seconds in result.timings.values())
    times = [line.at for line in result.transcript.lines]
    assert times == sorted(times)

    (envelope,) = server.handler.envelopes
    assert envelope.mail_from == SENDER
    assert envelope.rcpt_tos == [RECIPIENT]
    content = envelope.original_content
    assert content is not None
    assert len(content) == 600
    assert result.message_id.encode() in content


async def test_resolves_the_server_name_first(smtp_server: StartServer) -> None:
    server = smtp_server()
    result = await send(make_settings(server.port, server=SERVER_NAME), resolve=localhost)
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert Stage.DNS in result.timings
    assert said(result, Direction.NOTE)[0].startswith(f"{SERVER_NAME} resolved to {HOST} in ")


async def test_starttls_then_auth_plain(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(
        tls_context=pki.server_context(), require_starttls=True, authenticator=authenticator
    )
    settings = make_settings(
        server.port,
        server=SERVER_NAME,
        security="starttls",
        auth={"user": "alice", "password": PASSWORD},
    )
    result = await send(settings, resolve=localhost, ca_file=pki.ca_file)

    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.authenticated
    assert result.tls is not None
    assert result.tls.verified
    assert result.tls.subject == SERVER_SUBJECT
    assert result.extensions["AUTH"] == "LOGIN PLAIN"
    assert "STARTTLS" not in result.extensions  # the second EHLO's view
    client = said(result, Direction.CLIENT)
    assert client[:4] == [f"EHLO {HELO}", "STARTTLS", f"EHLO {HELO}", "AUTH PLAIN ****"]
    assert any(
        note.startswith("TLS established TLSv1.") and f"issuer {CA_SUBJECT}," in note
        for note in said(result, Direction.NOTE)
    )
    assert {Stage.STARTTLS, Stage.AUTH} <= set(result.timings)
    assert_no_secrets(result, "alice", PASSWORD)


async def test_implicit_tls(smtp_server: StartServer, pki: Pki) -> None:
    # aiosmtpd counts only STARTTLS as encryption, so AUTH must be allowed "without" it.
    server = smtp_server(
        ssl_context=pki.server_context(), authenticator=authenticator, auth_require_tls=False
    )
    settings = make_settings(
        server.port, security="tls", auth={"user": "alice", "password": PASSWORD}
    )
    result = await send(settings, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.tls is not None
    assert result.tls.version.startswith("TLSv1.")
    assert said(result, Direction.CLIENT)[0] == f"EHLO {HELO}"


async def test_unverified_tls_accepts_a_wrong_name(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context(wrong_name=True))
    settings = make_settings(server.port, security="starttls", verify_tls=False)
    result = await send(settings)
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.tls is not None
    assert not result.tls.verified
    assert result.tls.subject == OTHER_SUBJECT


# --- refusals ------------------------------------------------------------------------------


async def test_unknown_recipient(smtp_server: StartServer) -> None:
    reply = f"550 5.1.1 <{RECIPIENT}>: Recipient address rejected: User unknown"
    server = smtp_server(Handler(rcpt_replies={RECIPIENT: reply}))
    result = await send(make_settings(server.port))
    assert_stopped(result, Outcome.REJECTED, Stage.RCPT, 550, "5.1.1")
    assert result.text == reply[4:]
    assert list(result.rejected_recipients) == [RECIPIENT]
    assert "DATA" not in said(result, Direction.CLIENT)
    assert said(result, Direction.CLIENT)[-1] == "QUIT"


async def test_some_recipients_rejected_still_delivers(smtp_server: StartServer) -> None:
    unknown = "nobody@remote.example"
    server = smtp_server(Handler(rcpt_replies={unknown: "550 5.1.1 User unknown"}))
    result = await send(make_settings(server.port, to=[unknown, RECIPIENT]))
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.accepted_recipients == [RECIPIENT]
    assert result.rejected_recipients[unknown].enhanced == "5.1.1"
    assert server.handler.envelopes[0].rcpt_tos == [RECIPIENT]
    assert result.to_json()["rejected_recipients"][unknown]["code"] == 550


async def test_greylisted_at_rcpt(smtp_server: StartServer) -> None:
    server = smtp_server(Handler(rcpt_replies={RECIPIENT: "451 4.7.1 Greylisted, try again later"}))
    result = await send(make_settings(server.port))
    assert_stopped(result, Outcome.REJECTED, Stage.RCPT, 451, "4.7.1")


async def test_refused_at_data(smtp_server: StartServer) -> None:
    server = smtp_server(Handler(data_reply="451 4.7.1 Please try again later"))
    result = await send(make_settings(server.port))
    assert_stopped(result, Outcome.REJECTED, Stage.DATA, 451, "4.7.1")


async def test_size_is_declared_and_refused_at_mail(smtp_server: StartServer) -> None:
    server = smtp_server(data_size_limit=2000)
    result = await send(make_settings(server.port, size=5000))
    assert_stopped(result, Outcome.REJECTED, Stage.MAIL, 552)
    assert f"MAIL FROM:<{SENDER}> SIZE=5000" in said(result, Direction.CLIENT)


# --- the network and misbehaving peers -----------------------------------------------------


async def test_connection_refused(closed_port: int) -> None:
    result = await send(make_settings(closed_port))
    assert_stopped(result, Outcome.CONNECT_REFUSED, Stage.CONNECT)
    assert result.text == f"connection to {HOST}:{closed_port} refused"
    assert Stage.CONNECT in result.timings


async def test_connect_timeout() -> None:
    connector = FailingConnector(ConnectTimeout(errno.ETIMEDOUT, "connect timed out"))
    result = await send(
        make_settings(25, server="mail.isp.example"),
        connector=connector,
        resolve=lambda name: _addresses("10.0.0.5"),
    )
    assert_stopped(result, Outcome.CONNECT_TIMEOUT, Stage.CONNECT)
    assert result.text == "connect timeout to mail.isp.example:25 after 2.0 s"
    assert result.server_address == "10.0.0.5"
    assert said(result, Direction.NOTE)[-1] == "no answer from 10.0.0.5:25 within 2.0 s"


async def _addresses(*addresses: str) -> list[str]:
    return list(addresses)


async def test_unreachable() -> None:
    connector = FailingConnector(HostUnreachable(errno.EHOSTUNREACH, "no route to 10.9.9.9:587"))
    result = await send(make_settings(587, server="10.9.9.9"), connector=connector)
    assert_stopped(result, Outcome.UNREACHABLE, Stage.CONNECT)


async def test_dns_failure() -> None:
    class NameNotFound(Exception):
        permanent = True

    async def nxdomain(name: str) -> list[str]:
        raise NameNotFound(f"{name}: NXDOMAIN")

    result = await send(make_settings(25, server="smtp.typo.example"), resolve=nxdomain)
    assert_stopped(result, Outcome.DNS_FAILURE, Stage.DNS)
    assert result.text == "smtp.typo.example: NXDOMAIN"
    assert result.server_address is None
    assert set(result.timings) == {Stage.DNS}


async def test_no_banner(scripted_server: ScriptedServer) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    port = await scripted_server(silent)
    result = await send(make_settings(port, timeout=0.3))
    assert_stopped(result, Outcome.NO_BANNER, Stage.BANNER)
    assert result.text == f"no greeting from {HOST}:{port} within 0.3 s"
    assert said(result, Direction.NOTE)[-1] == "timed out after 0.3 s waiting for the banner"
    assert result.timings[Stage.BANNER] >= 0.29


async def test_connection_closed_after_banner(scripted_server: ScriptedServer) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.lab.test ESMTP\r\n")
        await writer.drain()

    port = await scripted_server(hang_up)
    result = await send(make_settings(port))
    assert_stopped(result, Outcome.CONNECTION_LOST, Stage.EHLO)
    assert result.accepted_by == "mx.lab.test"


async def test_server_stops_answering_mid_session(scripted_server: ScriptedServer) -> None:
    async def tarpit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.lab.test ESMTP\r\n")
        await reader.read()

    port = await scripted_server(tarpit)
    result = await send(make_settings(port, timeout=0.3))
    assert_stopped(result, Outcome.CONNECTION_LOST, Stage.EHLO)
    assert "timed out after 0.3 s" in result.text


@pytest.mark.parametrize(
    ("greeting", "outcome", "code", "enhanced", "quits"),
    [
        # 421: the server is closing the channel; saying QUIT would only hit a closed socket.
        (b"421 4.7.0 mx.lab.test Too many connections\r\n", Outcome.REJECTED, 421, "4.7.0", False),
        # 554 at the greeting: RFC 5321 3.1 has the server wait for QUIT, so it is sent.
        (b"554 5.7.1 Service unavailable\r\n", Outcome.REJECTED, 554, "5.7.1", True),
        (b"HTTP/1.1 400 Bad Request\r\n", Outcome.NO_BANNER, None, None, False),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n", Outcome.NO_BANNER, None, None, False),
        (b"220 " + b"x" * 5000 + b"\r\n", Outcome.NO_BANNER, None, None, False),
        (b"220-mx.lab.test partial", Outcome.CONNECTION_LOST, None, None, False),
    ],
)
async def test_bad_greetings(
    scripted_server: ScriptedServer,
    greeting: bytes,
    outcome: Outcome,
    code: int | None,
    enhanced: str | None,
    quits: bool,
) -> None:
    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        if quits:
            await reader.readline()
            writer.write(b"221 bye\r\n")
            await writer.drain()

    port = await scripted_server(greet)
    result = await send(make_settings(port))
    assert_stopped(result, outcome, Stage.BANNER, code, enhanced)
    assert ("QUIT" in said(result, Direction.CLIENT)) is quits
    for line in said(result, Direction.SERVER):
        assert line.isprintable(), line


def mini_smtp(*, ehlo: bytes) -> Script:
    """An old-fashioned server: EHLO answered with `ehlo`, HELO/MAIL/RCPT/DATA accepted."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 old.lab.test SMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(ehlo)
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                while await reader.readline() != b".\r\n":
                    pass
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                return
            else:
                writer.write(b"250 ok\r\n")

    return serve


async def test_helo_fallback(scripted_server: ScriptedServer) -> None:
    port = await scripted_server(mini_smtp(ehlo=b"502 5.5.1 EHLO not implemented\r\n"))
    result = await send(make_settings(port))
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250)
    assert said(result, Direction.CLIENT)[:3] == [
        f"EHLO {HELO}",
        f"HELO {HELO}",
        f"MAIL FROM:<{SENDER}>",
    ]
    assert "502 5.5.1 EHLO not implemented" in said(result, Direction.SERVER)
    assert result.extensions == {}


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (TimeoutError(), Outcome.CONNECT_TIMEOUT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Outcome.CONNECT_REFUSED),
        (OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"), Outcome.UNREACHABLE),
    ],
)
async def test_plain_os_errors_from_a_connector(error: OSError, outcome: Outcome) -> None:
    result = await send(make_settings(25), connector=FailingConnector(error))
    assert_stopped(result, outcome, Stage.CONNECT)
