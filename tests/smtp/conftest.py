"""Real SMTP servers on 127.0.0.1 for the client tests: aiosmtpd, the lab CA, scripted peers.

aiosmtpd servers run in their own thread (its `Controller`), so the client
under test has the test's event loop to itself. Misbehaving peers (silent,
hanging up, HELO-only) are tiny asyncio servers in the test's loop, scripted
per test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, AuthResult, Envelope, LoginPassword, Session, auth_mechanism
from aiosmtpd.smtp import SMTP as SMTPServer

from lab.nodes.config import TlsFiles
from lab.nodes.tls import issue_certificates, server_context
from lab.scenario.model import CertificateFault

HOST = "127.0.0.1"
SERVER_NAME = "localhost"  # what the good certificate is issued for (and HOST)
OTHER_NAME = "other.example"  # what the wrong-name certificate is issued for
# The certificates' subjects as a client reports them (RFC 4514: last attribute first).
SERVER_SUBJECT = "CN=localhost,O=smtp-lab"
OTHER_SUBJECT = "CN=other.example,O=smtp-lab"
CA_SUBJECT = "CN=smtp-lab CA,O=smtp-lab"
USERS = {"alice": "s3cret-Pa55word"}


# --- certificates ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """The lab CA and two server certificates: one for `localhost`, one for another name."""

    ca_file: Path
    good: TlsFiles
    wrong_name: TlsFiles

    def server_context(self, *, wrong_name: bool = False) -> ssl.SSLContext:
        """A server-side TLS context presenting the good (or the wrong-name) certificate."""
        return server_context(self.wrong_name if wrong_name else self.good)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Issued once per run by the lab's own issuer; the good certificate also names HOST."""
    ca_file, files = issue_certificates(
        tmp_path_factory.mktemp("pki"),
        {SERVER_NAME: CertificateFault.NONE, OTHER_NAME: CertificateFault.NONE},
        addresses={SERVER_NAME: [HOST]},
    )
    return Pki(ca_file, files[SERVER_NAME], files[OTHER_NAME])


# --- aiosmtpd servers --------------------------------------------------------------------------


@dataclass
class Handler:
    """Records what arrived; answers RCPT and DATA as a test tells it to."""

    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_RCPT(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        self.envelopes.append(envelope)
        return "250 2.0.0 Ok: queued as TEST1"


class CramHandler(Handler):
    """A handler that also speaks CRAM-MD5 (aiosmtpd has no built-in implementation)."""

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM__MD5(self, server: SMTPServer, args: list[str]) -> AuthResult:
        challenge = f"<{secrets.randbelow(10**9)}.1@{SERVER_NAME}>".encode()
        response = await server.challenge_auth(challenge)
        if response is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = response.decode().rpartition(" ")
        password = USERS.get(user, "")
        expected = hmac.new(password.encode(), challenge, hashlib.md5).hexdigest()
        ok = bool(password) and hmac.compare_digest(expected, digest)
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False)


def authenticator(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    """Accept the users in `USERS` for the built-in mechanisms."""
    if not isinstance(auth_data, LoginPassword):
        return AuthResult(success=False, handled=False)
    user, password = auth_data.login.decode(), auth_data.password.decode()
    # handled=False on failure makes aiosmtpd answer `535 5.7.8` (True would mean "said already").
    return AuthResult(success=USERS.get(user) == password, handled=False)


class _EphemeralController(Controller):
    """Binds port 0 and learns the real port before aiosmtpd probes its own server."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@dataclass
class RunningServer:
    """An aiosmtpd server on 127.0.0.1:port."""

    port: int
    handler: Handler


StartServer = Callable[..., RunningServer]


@pytest.fixture
def smtp_server() -> Iterator[StartServer]:
    """Start aiosmtpd servers: `smtp_server(handler=None, **SMTP keyword arguments)`."""
    controllers: list[Controller] = []

    def start(handler: Handler | None = None, **kwargs: Any) -> RunningServer:
        handler = handler or Handler()
        kwargs.setdefault("server_hostname", "mx.lab.test")  # getfqdn() can be slow
        controller = _EphemeralController(handler, hostname=HOST, port=0, **kwargs)
        controller.start()
        controllers.append(controller)
        return RunningServer(controller.port, handler)

    yield start
    for controller in controllers:
        controller.stop()


# --- scripted misbehaving peers ----------------------------------------------------------------

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def scripted_server() -> AsyncIterator[Callable[[Script], Awaitable[int]]]:
    """Start asyncio servers that run `script(reader, writer)` per connection; yields ports."""
    servers: list[asyncio.Server] = []
    tasks: list[asyncio.Task[Any]] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(script: Script, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        writers.append(w)
        try:
            await script(reader, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    async def start(script: Script) -> int:
        server = await asyncio.start_server(lambda r, w: handle(script, r, w), HOST, 0)
        servers.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    yield start
    # Scripts that wait forever are cancelled; every transport is closed before the loop is.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for writer in writers:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A port nothing listens on: bound (so no one else takes it) but not listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        yield sock.getsockname()[1]
