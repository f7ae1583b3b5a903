"""SMTP inspection (`lab.nodes.inspection`): the rewriting rules, the standalone proxy in
front of a real mail server, the in-process interposer, and the local backend's use of it."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lab.nodes.config import InspectionConfig, RouterConfig
from lab.nodes.inspection import (
    MASKED_COMMAND,
    MASKED_STARTTLS,
    InspectedSession,
    Interposer,
    main,
    original_destination,
    start,
)
from lab.nodes.tls import client_context
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.scenario.model import AuthPolicy, ListenerTls
from tests.nodes.conftest import (
    HOSTNAME,
    LOCALHOST,
    LabCertificates,
    MailServerUnderTest,
    StartServer,
    listener,
)

SCENARIOS = Path(__file__).parents[2] / "scenarios"
MASKED_BANNER = b"220 " + b"*" * len(f"{HOSTNAME} ESMTP smtp-lab") + b"\r\n"
INSPECT_ALL = InspectionConfig(ports=[25])
BANNER_ONLY = InspectionConfig(ports=[25], strip_starttls=False)


def session(config: InspectionConfig = INSPECT_ALL) -> tuple[InspectedSession, list[str]]:
    seen: list[str] = []
    return InspectedSession(config, lambda event, **fields: seen.append(event)), seen


# --- the rules, without sockets ----------------------------------------------------------------


class TestRules:
    def test_banner_text_becomes_asterisks(self) -> None:
        inspected, seen = session()
        banner = b"220 mx.example.com ESMTP Postfix\r\n"
        assert inspected.from_server(banner) == b"220 " + b"*" * 28 + b"\r\n"
        assert seen == ["banner-mangled"]
        # Later 220 replies (to STARTTLS, say) are not the banner.
        assert inspected.from_server(b"250 OK\r\n") == b"250 OK\r\n"

    def test_multiline_banner(self) -> None:
        inspected, _ = session()
        assert inspected.from_server(b"220-mx.example.com\r\n") == b"220-**************\r\n"
        assert inspected.from_server(b"220 welcome\r\n") == b"220 *******\r\n"
        assert inspected.from_server(b"220 later\r\n") == b"220 later\r\n"

    def test_a_refusing_greeting_is_left_alone(self) -> None:
        inspected, _ = session()
        assert inspected.from_server(b"554 5.7.1 go away\r\n") == b"554 5.7.1 go away\r\n"

    @pytest.mark.parametrize("final", [False, True], ids=["middle", "last"])
    def test_starttls_masked_in_ehlo(self, final: bool) -> None:
        inspected, seen = session()
        inspected.from_server(b"220 x\r\n")
        separator = b" " if final else b"-"
        line = b"250" + separator + b"STARTTLS\r\n"
        assert inspected.from_server(line) == b"250" + separator + MASKED_STARTTLS + b"\r\n"
        assert inspected.from_server(b"250-SIZE 1000\r\n") == b"250-SIZE 1000\r\n"
        assert seen[-1] == "starttls-masked"

    def test_starttls_command_masked(self) -> None:
        inspected, seen = session()
        assert inspected.from_client(b"STARTTLS\r\n") == MASKED_COMMAND + b"\r\n"
        assert inspected.from_client(b"starttls\r\n") == MASKED_COMMAND + b"\r\n"
        assert inspected.from_client(b"EHLO a\r\n") == b"EHLO a\r\n"
        assert seen == ["command-masked", "command-masked"]

    def test_message_content_is_never_rewritten(self) -> None:
        inspected, _ = session()
        inspected.from_server(b"220 x\r\n")
        inspected.from_client(b"DATA\r\n")
        inspected.from_server(b"354 go ahead\r\n")
        assert inspected.from_client(b"STARTTLS\r\n") == b"STARTTLS\r\n"
        assert inspected.from_client(b".\r\n") == b".\r\n"
        assert inspected.from_client(b"STARTTLS\r\n") == MASKED_COMMAND + b"\r\n"

    def test_tls_let_through_turns_the_connection_opaque(self) -> None:
        inspected, _ = session(BANNER_ONLY)
        inspected.from_server(b"220 x\r\n")
        assert inspected.from_server(b"250 STARTTLS\r\n") == b"250 STARTTLS\r\n"
        assert inspected.from_client(b"STARTTLS\r\n") == b"STARTTLS\r\n"
        before = inspected.opaque
        inspected.from_server(b"220 Ready to start TLS\r\n")
        assert (before, inspected.opaque) == (False, True)
        assert inspected.from_server(b"220 binary\r\n") == b"220 binary\r\n"

    def test_a_refused_starttls_keeps_inspecting(self) -> None:
        inspected, _ = session(BANNER_ONLY)
        inspected.from_server(b"220 x\r\n")
        inspected.from_client(b"STARTTLS\r\n")
        inspected.from_server(b"454 4.7.0 TLS not available\r\n")
        assert not inspected.opaque

    def test_everything_off(self) -> None:
        inspected, seen = session(
            InspectionConfig(ports=[25], mangle_banner=False, strip_starttls=False)
        )
        for line in (b"220 x\r\n", b"250-STARTTLS\r\n"):
            assert inspected.from_server(line) == line
        assert seen == []


# --- the standalone proxy in front of a real server ----------------------------------------------


@pytest.fixture
async def proxied(mail_server: StartServer) -> AsyncIterator[Any]:
    """Factory: an inspecting proxy (on an ephemeral port) in front of a new mail server."""
    servers: list[asyncio.Server] = []

    async def make(
        config: InspectionConfig = INSPECT_ALL, **server_fields: Any
    ) -> tuple[int, MailServerUnderTest]:
        target = await mail_server(**server_fields)
        real_port = next(iter(target.running.ports.values()))
        forward = config.model_copy(update={"upstream": f"{LOCALHOST}:{real_port}"})
        proxy = await start(forward, host=LOCALHOST, port=0)
        servers.append(proxy)
        return int(proxy.sockets[0].getsockname()[1]), target

    yield make
    for proxy in servers:
        proxy.close()
        await proxy.wait_closed()


class _Client(smtplib.SMTP):
    """smtplib that checks certificates against the lab name, not the proxy's address."""

    def __init__(self, port: int) -> None:
        super().__init__(LOCALHOST, port, timeout=5)
        self._host = HOSTNAME


class TestProxy:
    async def test_what_the_client_sees(self, proxied: Any) -> None:
        port, _ = await proxied(
            listeners=[listener(25, tls=ListenerTls.STARTTLS, auth=AuthPolicy.OFFERED)]
        )

        def conversation() -> tuple[dict[str, str], tuple[int, bytes]]:
            with _Client(port) as client:
                client.ehlo()
                return dict(client.esmtp_features), client.docmd("STARTTLS")

        features, starttls = await asyncio.to_thread(conversation)
        assert "starttls" not in features
        assert MASKED_STARTTLS.decode().lower() in features
        # The server got "XXXXXXXX" and says so itself.
        assert starttls == (500, b"5.5.2 Error: command not recognized")

    async def test_banner_on_the_wire(self, proxied: Any) -> None:
        port, _ = await proxied()
        reader, writer = await asyncio.open_connection(LOCALHOST, port)
        assert await asyncio.wait_for(reader.readline(), 5) == MASKED_BANNER
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    async def test_mail_goes_through_unchanged(self, proxied: Any) -> None:
        port, target = await proxied()
        body = b"Subject: hi\r\nMessage-ID: <i-1@x>\r\n\r\nSTARTTLS\r\n220 not a banner\r\n"

        def conversation() -> dict[str, Any]:
            with _Client(port) as client:
                return client.sendmail("a@remote.example", ["alice@example.com"], body)

        assert await asyncio.to_thread(conversation) == {}
        (stored,) = target.store.messages("alice@example.com")
        assert stored.data.endswith(b"\r\n\r\nSTARTTLS\r\n220 not a banner\r\n")

    async def test_starttls_let_through_works(
        self, proxied: Any, lab_certificates: LabCertificates
    ) -> None:
        port, _ = await proxied(
            BANNER_ONLY,
            listeners=[listener(587, tls=ListenerTls.STARTTLS, auth=AuthPolicy.OFFERED)],
        )
        context = client_context(lab_certificates.ca_file, verify=True)

        def conversation() -> tuple[int, bytes]:
            with _Client(port) as client:
                client.starttls(context=context)
                return client.login("alice", "s3cret-Alice")

        assert (await asyncio.to_thread(conversation))[0] == 235

    async def test_unreachable_upstream_closes_the_client(self) -> None:
        closed = socket.socket()
        closed.bind((LOCALHOST, 0))
        dead_port = closed.getsockname()[1]
        proxy = await start(
            InspectionConfig(upstream=f"{LOCALHOST}:{dead_port}"), host=LOCALHOST, port=0
        )
        try:
            reader, writer = await asyncio.open_connection(
                LOCALHOST, proxy.sockets[0].getsockname()[1]
            )
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
        finally:
            closed.close()
            proxy.close()
            await proxy.wait_closed()

    def test_original_destination(self) -> None:
        # Not redirected, the original destination is the real one; iptables is not needed
        # to see that the netfilter answer is decoded right (only conntrack).
        listener_socket = socket.create_server((LOCALHOST, 0))
        address = listener_socket.getsockname()
        with listener_socket, socket.create_connection(address):
            accepted, _ = listener_socket.accept()
            with accepted:
                try:
                    destination = original_destination(accepted)
                except OSError as error:
                    pytest.skip(f"no connection tracking on this host ({error})")
        assert destination == address

    def test_main_refuses_a_router_without_inspection(self, tmp_path: Path) -> None:
        path = tmp_path / "router.json"
        config = RouterConfig(
            name="isp", data_dir=tmp_path, inside_subnet="10.0.0.0/24", outside_subnet="10.0.1.0/24"
        )
        path.write_text(config.model_dump_json())
        assert main([str(path)]) == 2
        assert main([]) == 2
        assert main([str(tmp_path / "missing.json")]) == 2


# --- in process -------------------------------------------------------------------------------


class TestInterposer:
    async def test_wraps_an_open_connection(self, mail_server: StartServer) -> None:
        target = await mail_server()
        interposer = Interposer()
        upstream = await asyncio.open_connection(LOCALHOST, target.port())
        reader, writer = await interposer.wrap(upstream, INSPECT_ALL)
        assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"220 ****")
        writer.write(b"QUIT\r\n")
        assert await asyncio.wait_for(reader.readline(), 5) == b"221 Bye\r\n"
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        interposer.close()

    async def test_close_cancels_running_inspections(self, mail_server: StartServer) -> None:
        target = await mail_server()
        interposer = Interposer()
        upstream = await asyncio.open_connection(LOCALHOST, target.port())
        reader, writer = await interposer.wrap(upstream, INSPECT_ALL)
        await asyncio.wait_for(reader.readline(), 5)
        interposer.close()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()

    async def test_the_local_backend_inspects_what_the_router_inspects(self) -> None:
        scenario = load_scenario(SCENARIOS / "firewall-smtp-inspection.yaml")
        async with running_lab(scenario, LocalBackend()) as lab:
            relay = str(lab.topology.nodes["relay"].address)
            connector = lab.connector_for("laptop")
            greetings = {}
            for port in (25, 587):
                reader, writer = await connector.open_connection(relay, port, timeout=5)
                greetings[port] = await asyncio.wait_for(reader.readline(), 5)
                writer.close()
            # The relay's own view of itself passes no router.
            reader, writer = await lab.connector_for("relay").open_connection(relay, 25, timeout=5)
            greetings[0] = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
        assert greetings[25] == b"220 " + b"*" * len("mail.example.com ESMTP smtp-lab") + b"\r\n"
        assert greetings[587] == b"220 mail.example.com ESMTP smtp-lab\r\n"
        assert greetings[0] == greetings[587]
