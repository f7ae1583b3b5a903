"""Resource limits on real sockets: the session caps answer 421 4.7.0, an idle session is
told 421 4.4.2, a flood against a low descriptor limit is served or refused (never
dropped, never a traceback), and the event log stays within its bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.nodes.config import MailServerConfig
from lab.nodes.events import EventLog, read_events
from lab.nodes.mailserver.limits import SessionGate, fd_capacity
from lab.nodes.mailserver.store import MailStore
from lab.replies import S421_TIMEOUT, S421_TOO_MANY, S421_TOO_MANY_FROM_CLIENT
from lab.scenario.model import MailboxState
from tests.nodes.conftest import (
    HOSTNAME,
    LOCALHOST,
    StartServer,
    close,
    listener,
    proxy_header,
)

OUTSIDE = "10.213.2.77"
OTHER = "10.213.2.78"
BANNER = f"220 {HOSTNAME} ESMTP smtp-lab\r\n".encode()


def wire(reply: str) -> bytes:
    return (reply + "\r\n").encode()


async def connect(
    port: int, source: str | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(LOCALHOST, port)
    if source is not None:
        writer.write(proxy_header(source, 25))
    return reader, writer


async def first_line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 5)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info]


class TestSessionCaps:
    async def test_beyond_the_cap_a_client_gets_421_and_a_freed_place_is_reused(
        self, mail_server: StartServer, caplog: pytest.LogCaptureFixture
    ) -> None:
        server = await mail_server(limits={"connections": 2})
        held = [await connect(server.port()) for _ in range(2)]
        for reader, _ in held:
            assert await first_line(reader) == BANNER
        reader, writer = await connect(server.port())
        assert await first_line(reader) == wire(S421_TOO_MANY(hostname=HOSTNAME))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        await close(held[0][1])
        greeting = b""
        for _ in range(50):  # the server notices the close on its next loop turn
            reader, writer = await connect(server.port())
            greeting = await first_line(reader)
            await close(writer)
            if greeting == BANNER:
                break
            await asyncio.sleep(0.02)
        assert greeting == BANNER
        await close(held[1][1])
        refused = [e for e in server.events("command") if e.get("decision") == "connections"]
        assert refused
        assert refused[0]["code"] == 421
        assert tracebacks(caplog) == []

    async def test_per_client_cap_spares_other_clients(self, mail_server: StartServer) -> None:
        server = await mail_server(proxy_protocol=True, limits={"per_client": 2})
        held = [await connect(server.port(), OUTSIDE) for _ in range(2)]
        for reader, _ in held:
            assert await first_line(reader) == BANNER
        reader, writer = await connect(server.port(), OUTSIDE)
        expected = S421_TOO_MANY_FROM_CLIENT(hostname=HOSTNAME, client=OUTSIDE)
        assert await first_line(reader) == wire(expected)
        await close(writer)
        other_reader, other_writer = await connect(server.port(), OTHER)
        assert await first_line(other_reader) == BANNER
        for _, each in [*held, (other_reader, other_writer)]:
            await close(each)

    async def test_loopback_is_exempt_from_the_per_client_cap(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(limits={"per_client": 1})
        sessions = [await connect(server.port()) for _ in range(3)]
        for reader, _ in sessions:
            assert await first_line(reader) == BANNER
        for _, writer in sessions:
            await close(writer)

    def test_capacity_leaves_descriptors_for_the_process(self) -> None:
        assert SessionGate(1000, 50, fd_limit=256).capacity == fd_capacity(256) < 100
        assert SessionGate(10, 50, fd_limit=100_000).capacity == 10


class TestIdleTimeout:
    async def test_idle_client_is_told_421_4_4_2(self, mail_server: StartServer) -> None:
        server = await mail_server(limits={"idle_timeout": 0.3})
        reader, writer = await connect(server.port())
        assert await first_line(reader) == BANNER
        writer.write(b"EHLO client.example\r\n")
        while (await first_line(reader))[3:4] == b"-":
            pass
        assert await first_line(reader) == wire(S421_TIMEOUT(hostname=HOSTNAME))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)
        (timeout,) = [e for e in server.events("command") if e.get("decision") == "timeout"]
        assert timeout["code"] == 421

    async def test_a_tarpit_still_closes_without_a_word(self, mail_server: StartServer) -> None:
        server = await mail_server(proxy_protocol=True, tarpit=True, limits={"idle_timeout": 0.3})
        reader, writer = await connect(server.port(), OUTSIDE)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        await close(writer)


class TestEventLogBound:
    def test_log_stops_at_its_bound_with_a_marker(self, tmp_path: Path) -> None:
        log = EventLog(tmp_path, "mx", max_bytes=4096)
        for number in range(1000):
            log.emit("session", number=number, client="10.0.0.1")
        log.close()
        assert (tmp_path / "events.jsonl").stat().st_size <= 4096
        events = read_events(tmp_path)
        assert events[0]["number"] == 0
        assert events[-1]["event"] == "log-truncated"
        assert log.dropped > 900

    async def test_a_busy_server_keeps_its_log_under_the_bound(
        self, mail_server: StartServer
    ) -> None:
        server = await mail_server(events_max_bytes=8192)
        for _ in range(60):
            reader, writer = await connect(server.port())
            assert await first_line(reader) == BANNER
            writer.write(b"QUIT\r\n")
            await first_line(reader)
            await close(writer)
        assert (server.config.data_dir / "events.jsonl").stat().st_size <= 8192
        assert server.events()[-1]["event"] == "log-truncated"


# --- a flood against a low descriptor limit, in a node process of its own -----------------

FD_LIMIT = 256
CLIENTS = 1000
MESSAGE = b"Subject: flood\r\n\r\nHello.\r\n.\r\n"


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


async def _one_client(port: int) -> str:
    """'served' (250 for a message), 'refused' (421 4.7.0), or what went wrong."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(LOCALHOST, port), 60)
    except (OSError, TimeoutError) as error:
        return f"connect: {error!r}"
    try:
        greeting = await asyncio.wait_for(reader.readline(), 60)
        if greeting.startswith(b"421 4.7.0 "):
            return "refused"
        if not greeting.startswith(b"220 "):
            return f"greeting: {greeting!r}"
        for command in (b"HELO flood.example", b"MAIL FROM:<a@remote.example>"):
            writer.write(command + b"\r\n")
            await asyncio.wait_for(reader.readline(), 60)
        writer.write(b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        await asyncio.wait_for(reader.readline(), 60)
        await asyncio.wait_for(reader.readline(), 60)
        writer.write(MESSAGE)
        reply = await asyncio.wait_for(reader.readline(), 60)
        return "served" if reply.startswith(b"250 ") else f"data: {reply!r}"
    except (OSError, TimeoutError) as error:
        return f"session: {error!r}"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_flood_beyond_the_descriptor_limit_is_served_or_refused(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = CLIENTS + 200
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"the test process needs {needed} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    port = _free_port()
    config = MailServerConfig(
        name="mx",
        data_dir=tmp_path / "mx",
        listen_host=LOCALHOST,
        role="mx",
        hostname=HOSTNAME,
        listeners=[listener(25).model_copy(update={"bind_port": port})],
        auth_mechanisms=[],
        domains=["example.com"],
        mailboxes={"alice@example.com": MailboxState.ACTIVE},
    )
    config_file = tmp_path / "mx.json"
    config_file.write_text(config.model_dump_json())
    node = subprocess.Popen(
        [sys.executable, "-m", "lab.nodes", "mx", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=_low_fd_limit,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                probe = socket.create_connection((LOCALHOST, port), 1)
                probe.close()
                break
            await asyncio.sleep(0.05)
        outcomes = await asyncio.gather(*(_one_client(port) for _ in range(CLIENTS)))
    finally:
        node.terminate()
        _, stderr = node.communicate(timeout=30)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    served = outcomes.count("served")
    refused = outcomes.count("refused")
    assert [o for o in outcomes if o not in ("served", "refused")] == []
    assert served > 0
    assert refused > 0
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")[-2000:]
    on_disk = MailStore(tmp_path / "mx" / "mailboxes").messages("alice@example.com")
    assert len(on_disk) == served
