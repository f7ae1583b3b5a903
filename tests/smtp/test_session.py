"""The SMTP session on its own, as the relay's outbound delivery and the probes use it.

DATA encoding is a pure function; the stages run against aiosmtpd (or a
scripted peer) on real sockets.
"""

from __future__ import annotations

import asyncio

import pytest

from lab.net import DirectConnector
from lab.scenario.model import Stage
from lab.smtp.errors import ConnectionLost, MalformedReply
from lab.smtp.session import SmtpSession, encode_data
from lab.smtp.transcript import Direction
from tests.smtp.conftest import HOST, StartServer
from tests.smtp.helpers import HELO, RECIPIENT, ScriptedServer, said


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
