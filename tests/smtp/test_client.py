"""The SMTP client against real servers on 127.0.0.1: outcomes, stages, transcripts, masking.

Every test talks over real sockets to aiosmtpd (or to a scripted asyncio peer
for misbehaviour aiosmtpd cannot produce). Only the connect timeout uses a
fake connector: a real dropped SYN is the router's business, tested elsewhere.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lab.net import ConnectTimeout, DirectConnector, HostUnreachable, Streams
from lab.nodes.client import main, run_once
from lab.nodes.config import ClientConfig, DnsConfig
from lab.scenario.model import MailSettings, Outcome, Stage
from lab.smtp import sasl
from lab.smtp.client import (
    ConnectionLost,
    MalformedReply,
    ProtocolError,
    SendResult,
    SmtpReply,
    SmtpSession,
    encode_data,
    parse_extensions,
    send_mail,
)
from lab.smtp.message import build_message, new_message_id
from lab.smtp.transcript import Direction
from tests.smtp.conftest import (
    HOST,
    SERVER_NAME,
    USERS,
    CramHandler,
    Handler,
    Pki,
    Script,
    StartServer,
    authenticator,
)

SENDER = "alice@customer.example"
RECIPIENT = "bob@remote.example"
PASSWORD = USERS["alice"]
HELO = "pc.customer.lan"

ScriptedServer = Callable[[Script], Awaitable[int]]


def make_settings(port: int, **overrides: Any) -> MailSettings:
    data: dict[str, Any] = {
        "server": HOST,
        "port": port,
        "from": SENDER,
        "to": [RECIPIENT],
        "timeout": 2.0,
        "size": 600,
    }
    data.update(overrides)
    return MailSettings.model_validate(data)


async def no_lookup(name: str) -> list[str]:
    raise AssertionError(f"{name} should not have been looked up")


async def localhost(name: str) -> list[str]:
    assert name == SERVER_NAME
    return [HOST]


async def send(
    settings: MailSettings,
    *,
    connector: Any = None,
    resolve: Callable[[str], Awaitable[list[str]]] = no_lookup,
    ca_file: Path | None = None,
) -> SendResult:
    return await send_mail(
        settings,
        connector=connector or DirectConnector(),
        resolve=resolve,
        helo=HELO,
        ca_file=ca_file,
    )


def said(result: SendResult | SmtpSession, direction: str) -> list[str]:
    """The texts of one direction's transcript lines."""
    return [line.text for line in result.transcript.lines if line.direction == direction]


def assert_stopped(
    result: SendResult,
    outcome: Outcome,
    stage: Stage | None,
    code: int | None = None,
    enhanced: str | None = None,
) -> None:
    assert (result.outcome, result.stage, result.code, result.enhanced) == (
        outcome,
        stage,
        code,
        enhanced,
    ), result.transcript.render()


class FailingConnector:
    """A connector whose connection attempts fail with a given `lab.net` error."""

    def __init__(self, error: OSError) -> None:
        self.error = error

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        raise self.error


# --- replies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "code", "texts", "enhanced"),
    [
        (["220 mx.lab.test ESMTP"], 220, ["mx.lab.test ESMTP"], None),
        (["250"], 250, [""], None),
        (
            ["250-mx.lab.test", "250-SIZE 100", "250 HELP"],
            250,
            ["mx.lab.test", "SIZE 100", "HELP"],
            None,
        ),
        (["550 5.1.1 <b@x>: User unknown"], 550, ["5.1.1 <b@x>: User unknown"], "5.1.1"),
        (["451 4.7.1 Greylisted"], 451, ["4.7.1 Greylisted"], "4.7.1"),
        (["550-5.7.1 first", "550 5.7.1 second"], 550, ["5.7.1 first", "5.7.1 second"], "5.7.1"),
        # The class of an enhanced code must agree with the reply code.
        (["250 5.1.1 odd"], 250, ["5.1.1 odd"], None),
        (["535 5.7.8"], 535, ["5.7.8"], "5.7.8"),
    ],
)
def test_reply_parse(lines: list[str], code: int, texts: list[str], enhanced: str | None) -> None:
    reply = SmtpReply.parse(lines)
    assert (reply.code, reply.lines, reply.enhanced) == (code, texts, enhanced)
    assert reply.wire_lines() == [line if len(line) > 3 else f"{line} " for line in lines]


@pytest.mark.parametrize(
    "lines",
    [
        ["HTTP/1.1 400 Bad Request"],
        ["SSH-2.0-OpenSSH_9.2"],
        ["\x16\x03\x01\x00"],
        ["600 no such class"],
        ["2500 too long a code"],
        ["250-first", "251 other code"],
        ["250 final", "250 after final"],
        ["250-never ends"],
        [],
    ],
)
def test_reply_parse_rejects_garbage(lines: list[str]) -> None:
    with pytest.raises(ProtocolError):
        SmtpReply.parse(lines)


def test_reply_properties() -> None:
    reply = SmtpReply.parse(
        ["550-5.1.1 <b@x>: Recipient address rejected:", "550 5.1.1 User unknown"]
    )
    assert reply.is_permanent
    assert reply.is_error
    assert not reply.is_positive
    assert not reply.is_transient
    assert not reply.is_intermediate
    assert reply.text == "5.1.1 <b@x>: Recipient address rejected:\n5.1.1 User unknown"
    assert reply.message == "<b@x>: Recipient address rejected: User unknown"
    assert SmtpReply.from_json(reply.to_json()) == reply
    assert SmtpReply.parse(["451 4.7.1 later"]).is_transient
    assert SmtpReply.parse(["354 go ahead"]).is_intermediate


def test_parse_extensions() -> None:
    reply = SmtpReply.parse(
        [
            "250-mx.lab.test",
            "250-SIZE 10240000",
            "250-starttls",
            "250-AUTH=LOGIN PLAIN",
            "250 8BITMIME",
        ]
    )
    assert parse_extensions(reply) == {
        "SIZE": "10240000",
        "STARTTLS": "",
        "AUTH": "LOGIN PLAIN",
        "8BITMIME": "",
    }


@pytest.mark.parametrize(
    ("message", "payload"),
    [
        (b"", b".\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".\n..\nx.y\r", b"..\r\n...\r\nx.y\r\n.\r\n"),
        (b"bare\rcr\r\n", b"bare\r\ncr\r\n.\r\n"),
    ],
)
def test_encode_data_normalises_and_dot_stuffs(message: bytes, payload: bytes) -> None:
    assert encode_data(message) == payload


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
    assert result.tls.subject == f"CN={SERVER_NAME}"
    assert result.extensions["AUTH"] == "LOGIN PLAIN"
    assert "STARTTLS" not in result.extensions  # the second EHLO's view
    client = said(result, Direction.CLIENT)
    assert client[:4] == [f"EHLO {HELO}", "STARTTLS", f"EHLO {HELO}", "AUTH PLAIN ****"]
    assert any(
        note.startswith("TLS established TLSv1.") and "issuer CN=smtp-lab test CA" in note
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
    assert result.tls.subject == "CN=other.example"


# --- AUTH ----------------------------------------------------------------------------------


def assert_no_secrets(result: SendResult, user: str, password: str) -> None:
    """Neither the password nor any blob derived from it is anywhere in the output."""
    rendered = result.transcript.render()
    as_json = json.dumps(result.to_json())
    forbidden = {
        password,
        sasl.b64(password),
        sasl.b64(user),
        sasl.plain_response(user, password),
    }
    for text in (rendered, as_json):
        for secret in forbidden:
            assert secret not in text, f"{secret!r} leaked:\n{rendered}"


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN", "CRAM-MD5"])
async def test_auth_mechanisms_succeed_and_are_masked(
    smtp_server: StartServer, mechanism: str
) -> None:
    server = smtp_server(CramHandler(), authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(
        server.port, auth={"user": "alice", "password": PASSWORD, "mechanism": mechanism}
    )
    result = await send(settings)

    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.authenticated
    client = said(result, Direction.CLIENT)
    auth_lines = client[
        client.index(f"EHLO {HELO}") + 1 : client.index(f"MAIL FROM:<{SENDER}> SIZE=600")
    ]
    expected = {
        "PLAIN": ["AUTH PLAIN ****"],
        "LOGIN": ["AUTH LOGIN", "****", "****"],
        "CRAM-MD5": ["AUTH CRAM-MD5", "****"],
    }[mechanism]
    assert auth_lines == expected
    if mechanism == "LOGIN":
        notes = said(result, Direction.NOTE)
        # aiosmtpd's challenges; control characters are escaped in the transcript.
        assert "334 VXNlciBOYW1lAA== (User Name\\x00)" in notes
        assert "334 UGFzc3dvcmQA (Password\\x00)" in notes
    assert_no_secrets(result, "alice", PASSWORD)


@pytest.mark.parametrize(
    ("excluded", "chosen"), [([], "AUTH PLAIN ****"), (["PLAIN"], "AUTH LOGIN")]
)
async def test_auto_mechanism_follows_preference(
    smtp_server: StartServer, excluded: list[str], chosen: str
) -> None:
    server = smtp_server(
        authenticator=authenticator, auth_require_tls=False, auth_exclude_mechanism=excluded
    )
    settings = make_settings(server.port, auth={"user": "alice", "password": PASSWORD})
    result = await send(settings)
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert chosen in said(result, Direction.CLIENT)


async def test_bad_password_is_rejected_at_auth(smtp_server: StartServer) -> None:
    server = smtp_server(authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(server.port, auth={"user": "alice", "password": "wrong-password"})
    result = await send(settings)
    assert_stopped(result, Outcome.REJECTED, Stage.AUTH, 535, "5.7.8")
    assert result.text == "5.7.8 Authentication credentials invalid"
    assert not result.authenticated
    assert said(result, Direction.CLIENT)[-1] == "QUIT"
    assert_no_secrets(result, "alice", "wrong-password")


async def test_forced_cram_md5_not_offered_gets_504(smtp_server: StartServer) -> None:
    server = smtp_server(authenticator=authenticator, auth_require_tls=False)
    settings = make_settings(
        server.port, auth={"user": "alice", "password": PASSWORD, "mechanism": "CRAM-MD5"}
    )
    result = await send(settings)
    assert_stopped(result, Outcome.REJECTED, Stage.AUTH, 504, "5.5.4")
    assert "AUTH CRAM-MD5" in said(result, Direction.CLIENT)
    assert result.extensions["AUTH"] == "LOGIN PLAIN"


async def test_auth_not_offered_before_tls(smtp_server: StartServer, pki: Pki) -> None:
    # The server offers AUTH only after STARTTLS; the mail program is set to no security.
    server = smtp_server(tls_context=pki.server_context(), authenticator=authenticator)
    settings = make_settings(server.port, auth={"user": "alice", "password": PASSWORD})
    result = await send(settings)
    assert_stopped(result, Outcome.AUTH_UNAVAILABLE, Stage.AUTH)
    assert "does not offer AUTH" in result.text
    assert not any(line.startswith("AUTH") for line in said(result, Direction.CLIENT))


# --- TLS failures --------------------------------------------------------------------------


async def test_starttls_not_offered(smtp_server: StartServer) -> None:
    server = smtp_server()
    result = await send(make_settings(server.port, security="starttls"))
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    assert "does not offer STARTTLS" in result.text
    assert "STARTTLS" not in said(result, Direction.CLIENT)


async def test_certificate_for_another_name(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context(wrong_name=True))
    settings = make_settings(server.port, server=SERVER_NAME, security="starttls")
    result = await send(settings, resolve=localhost, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    assert result.text.startswith("CERTIFICATE_VERIFY_FAILED: Hostname mismatch")
    assert f"'{SERVER_NAME}'" in result.text
    assert f"TLS handshake failed: {result.text}" in said(result, Direction.NOTE)


async def test_unknown_ca(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    settings = make_settings(server.port, server=SERVER_NAME, security="starttls")
    result = await send(settings, resolve=localhost, ca_file=None)  # system trust only
    assert_stopped(result, Outcome.TLS_FAILED, Stage.STARTTLS)
    assert result.text.startswith("CERTIFICATE_VERIFY_FAILED: unable to get local issuer")


async def test_unreadable_ca_file_is_a_tls_failure(
    smtp_server: StartServer, tmp_path: Path
) -> None:
    server = smtp_server()
    settings = make_settings(server.port, security="tls")
    result = await send(settings, ca_file=tmp_path / "missing.pem")
    assert_stopped(result, Outcome.TLS_FAILED, Stage.CONNECT)
    assert result.text.startswith("cannot load trusted certificates from ")


async def test_implicit_tls_against_a_starttls_port(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    settings = make_settings(server.port, security="tls", timeout=0.5)
    result = await send(settings, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.TLS_FAILED, Stage.CONNECT)
    assert "WRONG_VERSION_NUMBER" in result.text or "timed out" in result.text


async def test_starttls_against_an_implicit_tls_port(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(ssl_context=pki.server_context())
    settings = make_settings(server.port, security="starttls", timeout=0.3)
    result = await send(settings, ca_file=pki.ca_file)
    assert_stopped(result, Outcome.NO_BANNER, Stage.BANNER)


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


# --- the session on its own (as the relay's outbound delivery uses it) ---------------------


async def test_session_stage_by_stage(smtp_server: StartServer) -> None:
    server = smtp_server()
    message = b"Subject: dots\n\n.leading dot\nplain\r\n..two dots\rbare CR\n"
    async with SmtpSession(DirectConnector(), timeout=2.0) as session:
        await session.connect(HOST, server.port)
        assert (await session.read_banner()).code == 220
        assert (await session.ehlo("relay.lab.test")).is_positive
        assert session.extensions == {
            "SIZE": "33554432",
            "8BITMIME": "",
            "SMTPUTF8": "",
            "HELP": "",
        }
        assert (await session.mail("", size=len(message))).code == 250  # a bounce: MAIL FROM:<>
        assert (await session.rcpt(RECIPIENT)).code == 250
        assert (await session.data(message)).code == 250
        assert (await session.quit()) is not None
    assert f"MAIL FROM:<> SIZE={len(message)}" in said(session, Direction.CLIENT)
    (envelope,) = server.handler.envelopes
    assert envelope.original_content == (
        b"Subject: dots\r\n\r\n.leading dot\r\nplain\r\n..two dots\r\nbare CR\r\n"
    )
    await session.close()  # idempotent


async def test_session_refuses_command_injection(smtp_server: StartServer) -> None:
    server = smtp_server()
    async with SmtpSession(DirectConnector(), timeout=2.0) as session:
        await session.connect(HOST, server.port)
        await session.read_banner()
        with pytest.raises(ValueError, match="line break"):
            await session.mail("a@b.example>\r\nRCPT TO:<victim@x.example")


async def test_session_raises_typed_errors(scripted_server: ScriptedServer) -> None:
    async def junk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 ok\r\nthis is not smtp\r\n")
        await writer.drain()

    port = await scripted_server(junk)
    async with SmtpSession(DirectConnector(), timeout=1.0) as session:
        await session.connect(HOST, port)
        await session.read_banner()
        with pytest.raises(MalformedReply) as caught:
            await session.ehlo(HELO)
        assert caught.value.stage is Stage.EHLO
        assert caught.value.line == "this is not smtp"
        with pytest.raises(ConnectionLost) as lost:
            await session.read_reply(Stage.MAIL)
        assert lost.value.stage is Stage.MAIL


# --- results and the client node -----------------------------------------------------------


async def test_result_json_round_trip(smtp_server: StartServer, pki: Pki) -> None:
    server = smtp_server(tls_context=pki.server_context())
    result = await send(make_settings(server.port, security="starttls"), ca_file=pki.ca_file)
    data = json.loads(json.dumps(result.to_json()))
    assert {
        "outcome",
        "stage",
        "code",
        "enhanced",
        "text",
        "message_id",
        "transcript",
        "timings",
    } <= set(data)
    assert data["outcome"] == "delivered"
    assert data["stage"] == "data"
    again = SendResult.from_json(data)
    assert again.to_json() == data
    assert again.tls is not None
    assert again.tls.subject == f"CN={SERVER_NAME}"


def test_message_size_and_headers() -> None:
    settings = make_settings(25, size=4096, subject="Grüße")
    message_id = new_message_id("pc.customer.lan")
    assert message_id.startswith("<")
    assert message_id.endswith("@pc.customer.lan>")
    message = build_message(settings, message_id=message_id)
    assert len(message) == 4096
    head = message.split(b"\r\n\r\n", 1)[0].decode()
    for header in ("From: ", "To: ", "Subject: =?utf-8?", "Date: ", "MIME-Version: 1.0"):
        assert header in head
    assert f"Message-ID: {message_id}" in head
    assert b"\n" not in message.replace(b"\r\n", b"")


async def test_client_node_run_once(smtp_server: StartServer, tmp_path: Path) -> None:
    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    result = await run_once(config, connector=DirectConnector())
    assert_stopped(result, Outcome.DELIVERED, Stage.DATA, 250, "2.0.0")
    assert result.message_id.endswith(f"@{HELO}>")

    by_name = make_settings(server.port, server="mail.lab.test")
    result = await run_once(config, connector=DirectConnector(), settings_override=by_name)
    assert_stopped(result, Outcome.DNS_FAILURE, Stage.DNS)
    assert "no lab resolver" in result.text


def test_client_node_main(
    smtp_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    # The bare node config, as `python -m lab.nodes` reads it for every role.
    path = tmp_path / "client.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    override = make_settings(server.port, to=["carol@remote.example"])

    assert main(path, override.model_dump_json(by_alias=True)) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["outcome"] == "delivered"
    assert data["accepted_recipients"] == ["carol@remote.example"]

    assert main(path, None) == 0
    assert json.loads(capsys.readouterr().out)["accepted_recipients"] == [RECIPIENT]

    assert main(path, '{"server": "x"}') == 2
    assert capsys.readouterr().err.startswith("client: ")
    assert main(tmp_path / "missing.json", None) == 2


def test_client_node_refuses_other_configs_and_the_old_wrapped_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dns = DnsConfig(name="dns", data_dir=tmp_path, zones=[], records=[])
    other = tmp_path / "dns.json"
    other.write_text(dns.model_dump_json(), encoding="utf-8")
    assert main(other, None) == 2
    assert "not a client" in capsys.readouterr().err
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(25)
    )
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"node": config.model_dump(mode="json")}), encoding="utf-8")
    assert main(wrapped, None) == 2
    assert capsys.readouterr().err.startswith("client: ")


def test_settings_file_keeps_the_password_off_the_command_line(
    smtp_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from lab.nodes.__main__ import main as node_main

    server = smtp_server()
    config = ClientConfig(
        name="client", data_dir=tmp_path, hostname=HELO, settings=make_settings(server.port)
    )
    path = tmp_path / "client.json"
    path.write_text(config.model_dump_json(), encoding="utf-8")
    settings = tmp_path / "settings.json"
    override = make_settings(server.port, to=["carol@remote.example"])
    settings.write_text(override.model_dump_json(by_alias=True), encoding="utf-8")
    assert node_main(["client", str(path), "--settings-file", str(settings)]) == 0
    assert json.loads(capsys.readouterr().out)["accepted_recipients"] == ["carol@remote.example"]
    assert node_main(["client", str(path), "--settings-file", str(tmp_path / "none")]) == 2
    assert "cannot read" in capsys.readouterr().err


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
