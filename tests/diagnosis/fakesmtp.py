"""A small, scriptable SMTP server on real sockets, for faults the lab's nodes do not have.

Each `Behaviour` says what the server answers at every stage: a silent or
slow greeting, a masked banner, EHLO refused, STARTTLS with a chosen TLS
context (or 454), AUTH replies, per-recipient replies, a connection dropped
in the middle of DATA, implicit TLS. The protocol loop is deliberately
minimal: it is a peer for the diagnosis engine, not a mail server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
DEFAULT_EHLO = ("PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME")
DEFAULT_AFTER_TLS = ("PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "8BITMIME")


@dataclass
class Behaviour:
    """What the server says; every field has the answer of a healthy submission server."""

    hostname: str = "mail.example.org"
    banner: str | None = "220 {hostname} ESMTP fake"  # None: never greet (tarpit)
    banner_delay: float = 0.0
    close_at_connect: bool = False
    raw_greeting: bytes | None = None  # something that is not SMTP at all
    ehlo: tuple[str, ...] = DEFAULT_EHLO
    ehlo_reply: str | None = None  # a refusal of EHLO, e.g. "502 5.5.1 EHLO not implemented"
    helo_reply: str | None = None  # default "250 {hostname}"
    ehlo_after_tls: tuple[str, ...] = DEFAULT_AFTER_TLS
    tls: ssl.SSLContext | None = None  # STARTTLS context; None answers 454
    starttls_garbage: bool = False  # say 220, then send junk instead of a handshake
    implicit_tls: ssl.SSLContext | None = None  # TLS from the first byte (port 465 style)
    auth_reply: str = "235 2.7.0 Authentication successful"
    auth_replies: dict[str, str] = field(default_factory=dict)  # per mechanism
    auth_reply_plain: str | None = None  # the answer to AUTH before STARTTLS, if different
    mail_reply: str = "250 2.1.0 Ok"
    mail_replies: dict[str, str] = field(default_factory=dict)  # per sender
    size_limit: int | None = None  # MAIL ... SIZE=n above this: 552 5.3.4
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    rcpt_reply: str = "250 2.1.5 Ok"
    data_end_reply: str = "250 2.0.0 Ok: queued as FAKE1"
    drop_in_data: bool = False  # hang up after the first lines of the message
    close_on: str | None = None  # hang up (no reply) when this verb arrives


class FakeSmtpServers:
    """Starts `Behaviour` servers in the running loop; `close()` ends every connection."""

    def __init__(self) -> None:
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, behaviour: Behaviour) -> int:
        """Listen on an ephemeral port of 127.0.0.1; returns the port."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            self._writers.append(writer)
            try:
                await _serve(behaviour, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
                pass
            finally:
                self._tasks.discard(task)
                writer.close()

        tls = behaviour.implicit_tls
        server = await asyncio.start_server(
            handle, HOST, 0, ssl=tls, ssl_handshake_timeout=5.0 if tls else None
        )
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, cancel sessions that wait forever, close every transport."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)
        for server in self._servers:
            await server.wait_closed()


async def _send(writer: asyncio.StreamWriter, *lines: str) -> None:
    writer.write(b"".join(line.encode() + b"\r\n" for line in lines))
    await writer.drain()


def _multiline(code: int, first: str, rest: tuple[str, ...]) -> list[str]:
    items = [first, *rest]
    return [f"{code}{' ' if i == len(items) - 1 else '-'}{text}" for i, text in enumerate(items)]


async def _serve(
    behaviour: Behaviour, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    name = behaviour.hostname
    if behaviour.close_at_connect:
        return
    if behaviour.raw_greeting is not None:
        writer.write(behaviour.raw_greeting)
        await writer.drain()
        await reader.read(1024)
        return
    if behaviour.banner is None:
        await reader.read()  # a tarpit: say nothing until the client gives up
        return
    if behaviour.banner_delay:
        await asyncio.sleep(behaviour.banner_delay)
    banner = behaviour.banner.format(hostname=name)
    await _send(writer, banner)
    if not banner.startswith("220"):
        await reader.read(1024)
        return
    encrypted = behaviour.implicit_tls is not None
    while True:
        line = await reader.readline()
        if not line:
            return
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        verb = text.split(" ", 1)[0].upper()
        if behaviour.close_on == verb:
            return
        if verb == "EHLO":
            if behaviour.ehlo_reply is not None:
                await _send(writer, behaviour.ehlo_reply)
                continue
            keywords = behaviour.ehlo_after_tls if encrypted else behaviour.ehlo
            if behaviour.size_limit is not None:
                keywords = tuple(
                    f"SIZE {behaviour.size_limit}" if k.startswith("SIZE") else k for k in keywords
                )
            await _send(writer, *_multiline(250, name, keywords))
        elif verb == "HELO":
            await _send(writer, behaviour.helo_reply or f"250 {name}")
        elif verb == "STARTTLS":
            if behaviour.tls is None and not behaviour.starttls_garbage:
                await _send(writer, "454 4.7.0 TLS not available due to local problem")
                continue
            await _send(writer, "220 2.0.0 Ready to start TLS")
            if behaviour.starttls_garbage:
                writer.write(b"this is not a TLS handshake\r\n" * 4)
                await writer.drain()
                return
            assert behaviour.tls is not None
            await writer.start_tls(behaviour.tls)
            encrypted = True
        elif verb == "AUTH":
            await _auth(behaviour, text, reader, writer, encrypted=encrypted)
        elif verb == "MAIL":
            await _send(writer, _mail_reply(behaviour, text))
        elif verb == "RCPT":
            address = text.partition(":")[2].strip().strip("<>").split(">")[0]
            await _send(writer, behaviour.rcpt_replies.get(address, behaviour.rcpt_reply))
        elif verb == "DATA":
            await _send(writer, "354 End data with <CR><LF>.<CR><LF>")
            if behaviour.drop_in_data:
                await reader.readline()
                writer.transport.abort()
                return
            while await reader.readline() not in (b".\r\n", b""):
                pass
            await _send(writer, behaviour.data_end_reply)
        elif verb == "RSET" or verb == "NOOP":
            await _send(writer, "250 2.0.0 Ok")
        elif verb == "QUIT":
            await _send(writer, "221 2.0.0 Bye")
            return
        else:
            await _send(writer, "502 5.5.2 Error: command not recognized")


def _mail_reply(behaviour: Behaviour, text: str) -> str:
    sender = text.partition(":")[2].strip().split(">")[0].strip("<")
    if behaviour.size_limit is not None:
        for part in text.split()[1:]:
            if part.upper().startswith("SIZE=") and int(part[5:]) > behaviour.size_limit:
                return "552 5.3.4 Message size exceeds fixed limit"
    return behaviour.mail_replies.get(sender, behaviour.mail_reply)


async def _auth(
    behaviour: Behaviour,
    text: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    encrypted: bool,
) -> None:
    parts = text.split()
    mechanism = parts[1].upper() if len(parts) > 1 else ""
    final = behaviour.auth_replies.get(mechanism, behaviour.auth_reply)
    if not encrypted and behaviour.auth_reply_plain is not None:
        final = behaviour.auth_reply_plain
    if not final.startswith("235") and final[:3] in ("504", "538", "530", "503"):
        # Refusals of the mechanism or of the circumstances come before any exchange.
        await _send(writer, final)
        return
    if mechanism == "LOGIN" and len(parts) == 2:
        await _send(writer, "334 VXNlcm5hbWU6")
        await reader.readline()
        await _send(writer, "334 UGFzc3dvcmQ6")
        await reader.readline()
    elif mechanism == "CRAM-MD5":
        await _send(writer, "334 PDEyMzQ1QGZha2U+")
        await reader.readline()
    elif mechanism == "PLAIN" and len(parts) == 2:
        await _send(writer, "334 ")
        await reader.readline()
    await _send(writer, final)


@contextlib.asynccontextmanager
async def fake_servers() -> AsyncIterator[FakeSmtpServers]:
    """`FakeSmtpServers` closed at the end of the block."""
    servers = FakeSmtpServers()
    try:
        yield servers
    finally:
        await servers.close()
