"""Readiness checks against real sockets on 127.0.0.1, with a stand-in for a container."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from lab.errors import LabStartError
from lab.net import Connector, DirectConnector
from lab.nodes import dns
from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.runtime.local import LocalBackend
from lab.runtime.readiness import (
    AllOf,
    DnsAnswers,
    EventLogged,
    FileCreated,
    LogLine,
    NotReady,
    SmtpGreeting,
    WaitStrategy,
    role_checks,
    wait_all,
)
from lab.scenario.loader import load_scenario
from lab.scenario.model import CertificateFault

LOOPBACK = "127.0.0.1"
SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FakeNode:
    """A `WaitTarget` on this host: its log, events and liveness are set by the test."""

    def __init__(self, name: str = "relay") -> None:
        self.name = name
        self.log = "starting up\n"
        self.logged: list[dict[str, Any]] = []
        self.ended: str | None = None

    def connector(self) -> Connector:
        return DirectConnector()

    def datagram_socket(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def events(self) -> list[dict[str, Any]]:
        return list(self.logged)

    def logs(self, tail: int = 30) -> str:
        return "\n".join(self.log.splitlines()[-tail:])

    def exited(self) -> str | None:
        return self.ended


async def serve(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, LOOPBACK, 0)
    return server, int(server.sockets[0].getsockname()[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.example.com ESMTP\r\n")
    await writer.drain()
    await reader.readline()
    writer.close()


class TestSmtpGreeting:
    async def test_ready_once_the_greeting_is_read(self) -> None:
        server, port = await serve(greet)
        async with server:
            await SmtpGreeting(LOOPBACK, port).wait_until_ready(FakeNode())

    async def test_a_refusal_greeting_counts(self) -> None:
        async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(b"554 5.7.1 no SMTP service here\r\n")
            writer.close()

        server, port = await serve(refuse)
        async with server:
            await SmtpGreeting(LOOPBACK, port).wait_until_ready(FakeNode())

    async def test_waits_for_a_listener_that_comes_later(self) -> None:
        port = free_port()
        check = SmtpGreeting(LOOPBACK, port).with_poll_interval(0.02)
        waiting = asyncio.ensure_future(check.wait_until_ready(FakeNode()))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        server = await asyncio.start_server(greet, LOOPBACK, port)
        async with server:
            await asyncio.wait_for(waiting, 5)

    async def test_a_slow_greeting_needs_only_the_accept(self) -> None:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()  # until the check hangs up
            writer.close()

        server, port = await serve(silent)
        async with server:
            await SmtpGreeting(LOOPBACK, port, slow_greeting=True).wait_until_ready(FakeNode())
            check = SmtpGreeting(LOOPBACK, port).with_startup_timeout(0.5)
            with pytest.raises(LabStartError, match="no SMTP greeting"):
                await check.wait_until_ready(FakeNode())

    async def test_timeout_carries_the_node_log_and_events(self) -> None:
        node = FakeNode()
        node.log = "smtplab-init: routes set\nTraceback: boom in the relay\n"
        node.logged = [{"event": "started", "ports": {"25": 25}}]
        check = SmtpGreeting(LOOPBACK, free_port()).with_startup_timeout(0.3)
        with pytest.raises(LabStartError) as caught:
            await check.wait_until_ready(node)
        message = str(caught.value)
        assert message.startswith("node relay not ready after 0.3 s: no SMTP greeting on")
        assert "refused" in message
        assert "boom in the relay" in message
        assert '"event": "started"' in message

    async def test_an_exited_node_fails_at_once(self) -> None:
        node = FakeNode()
        node.ended = "exited with 2 (exited)"
        node.log = "lab.nodes: cannot use config.json"
        check = SmtpGreeting(LOOPBACK, free_port()).with_startup_timeout(30)
        with pytest.raises(LabStartError, match="node relay exited with 2") as caught:
            await asyncio.wait_for(check.wait_until_ready(node), 5)
        assert "cannot use config.json" in str(caught.value)


class TestOtherChecks:
    async def test_dns_answers_soa(self, tmp_path: Path) -> None:
        config = DnsConfig(
            name="dns",
            data_dir=tmp_path,
            listen_host=LOOPBACK,
            port=0,
            zones=["example.com."],
            records=[DnsRecordConfig(name="mail.example.com.", type="A", value="10.0.0.5")],
        )
        running = await dns.start(config)
        try:
            check = DnsAnswers(LOOPBACK, "example.com.", running.ports[53])
            await check.wait_until_ready(FakeNode("dns"))
            # A zone it does not serve is NXDOMAIN: not the proof wanted.
            wrong = DnsAnswers(LOOPBACK, "example.org.", running.ports[53])
            with pytest.raises(LabStartError, match="NXDOMAIN"):
                await wrong.with_startup_timeout(0.3).wait_until_ready(FakeNode("dns"))
        finally:
            await running.stop()

    async def test_dns_not_listening_is_retried_not_waited_out(self) -> None:
        check = DnsAnswers(LOOPBACK, "example.com.", free_port()).with_startup_timeout(0.5)
        with pytest.raises(LabStartError, match="refused"):
            await asyncio.wait_for(check.wait_until_ready(FakeNode("dns")), 3)

    async def test_event_and_failure_event(self) -> None:
        node = FakeNode("isp")
        check = EventLogged("router-ready", failure="router-failed").with_poll_interval(0.01)
        waiting = asyncio.ensure_future(check.wait_until_ready(node))
        await asyncio.sleep(0.05)
        node.logged.append({"event": "router-ready"})
        await asyncio.wait_for(waiting, 2)
        node.logged = [{"event": "router-failed", "error": "iptables refused"}]
        with pytest.raises(LabStartError, match="node isp failed: iptables refused"):
            await check.wait_until_ready(node)

    async def test_log_line_and_all_of(self) -> None:
        node = FakeNode("laptop")
        both = AllOf(LogLine("routes set"), LogLine("second")).with_startup_timeout(0.3)
        assert both.describe() == "log line 'routes set' and log line 'second'"
        node.log += "routes set\n"
        with pytest.raises(LabStartError, match="log line 'second'"):
            await both.wait_until_ready(node)
        node.log += "second\n"
        await both.wait_until_ready(node)

    async def test_file_created(self, tmp_path: Path) -> None:
        marker = tmp_path / "relay.routes-set"
        check = FileCreated(marker, "routes set").with_poll_interval(0.01)
        assert check.describe() == f"routes set (file {marker})"
        with pytest.raises(LabStartError, match=r"node relay not ready after 0.2 s: no routes set"):
            await check.with_startup_timeout(0.2).wait_until_ready(FakeNode())
        waiting = asyncio.ensure_future(check.with_startup_timeout(5).wait_until_ready(FakeNode()))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        marker.touch()
        await asyncio.wait_for(waiting, 2)

    async def test_connection_attempts_back_off_file_looks_do_not(self) -> None:
        class Counted(WaitStrategy):
            def __init__(self, cheap: bool) -> None:
                super().__init__()
                self.cheap = cheap
                self.attempts = 0

            def describe(self) -> str:
                return "nothing"

            async def attempt(self, target: Any) -> None:
                self.attempts += 1
                raise NotReady("never")

        costly, cheap = Counted(cheap=False), Counted(cheap=True)
        for check in (costly, cheap):
            check.with_poll_interval(0.01).with_startup_timeout(0.6)
            with pytest.raises(LabStartError):
                await check.wait_until_ready(FakeNode())
        # Every 10 ms for 0.6 s would be about 60 attempts; growing by half up to 0.25 s,
        # the connection-like check makes about a dozen, the file look many more.
        assert costly.attempts <= 15
        assert cheap.attempts > costly.attempts

    async def test_wait_all_reports_the_first_failure(self) -> None:
        ready, broken = FakeNode("a"), FakeNode("b")
        ready.log = "ready"
        broken.ended = "exited with 1 (exited)"
        with pytest.raises(LabStartError, match="node b exited"):
            await wait_all([(ready, LogLine("ready")), (broken, LogLine("ready"))])


def test_role_checks_per_role() -> None:
    scenario = load_scenario(SCENARIOS / "happy-path.yaml")
    topology = LocalBackend().plan(scenario)
    described = {
        name: [check.describe() for check in role_checks(node, topology)]
        for name, node in topology.nodes.items()
    }
    relay = topology.nodes["relay"].address
    assert described["isp"] == ["router-ready event"]
    assert described["laptop"] == []
    assert [text.split(" for ")[0] for text in described["dns"]] == ["SOA answer"]
    assert f"SMTP greeting on {relay}:587" in described["relay"]
    assert all(text.startswith("SMTP greeting") for text in described["mx"])
    blocked = LocalBackend().plan(load_scenario(SCENARIOS / "blocked-port-25.yaml"))
    relay_checks = [check.describe() for check in role_checks(blocked.nodes["relay"], blocked)]
    assert f"SMTP greeting over TLS on {blocked.nodes['relay'].address}:465" in relay_checks


async def test_implicit_tls_handshake_then_greeting(tmp_path: Path) -> None:
    import ssl

    from lab.nodes.tls import issue_certificates

    _, issued = issue_certificates(tmp_path, {"mail.example.com": CertificateFault.EXPIRED})
    files = issued["mail.example.com"]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(files.cert_file, files.key_file)
    server = await asyncio.start_server(greet, LOOPBACK, 0, ssl=context)
    port = int(server.sockets[0].getsockname()[1])
    async with server:
        # An expired certificate is a scenario's fault, not a reason to wait.
        await SmtpGreeting(LOOPBACK, port, implicit_tls=True).wait_until_ready(FakeNode())
