"""`LabHandle`: a running lab as synchronous test code uses it.

Endpoints by node and port on one host address, the TLS details a client needs
to verify the lab's servers, mailboxes that wait, the customer's mail program
with its transcript, and the nodes' logs. `start_lab` makes one; `close` takes
it down (idempotent), and labs still open at interpreter exit are closed then.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.errors import UsageError
from lab.harness.loop import LoopThread
from lab.harness.mailbox import Mailbox

if TYPE_CHECKING:
    from lab.runtime.base import Backend, Endpoint, Lab
    from lab.scenario.model import Scenario
    from lab.smtp.result import SendResult

START_TIMEOUT = 300.0  # seconds: a first docker run may build the node image
CALL_TIMEOUT = 120.0
LOOPBACK = "127.0.0.1"

_OPEN: dict[int, LabHandle] = {}
_OPEN_LOCK = threading.Lock()


@dataclass(frozen=True)
class TlsDetails:
    """What a client needs to verify a lab server: trust `ca_file`, expect `server_hostname`
    (SNI and the certificate's name) while connecting to the endpoint's host and port."""

    ca_file: Path
    server_hostname: str

    def context(self) -> ssl.SSLContext:
        """A client context that trusts only the lab CA and checks the certificate names
        `server_hostname`, whatever host the client connected to (127.0.0.1 for an
        endpoint), so `smtplib.SMTP(lab.host, port).starttls(context=...)` verifies."""
        context = _NamedServerContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = self.server_hostname
        context.load_verify_locations(cafile=str(self.ca_file))
        return context


class _NamedServerContext(ssl.SSLContext):
    """Sends and verifies one fixed server name: clients pass the host they dialled
    (an endpoint's loopback address), which no lab certificate names."""

    server_name = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_bio(*args, **kwargs)


class LabHandle:
    """A running lab: its endpoints on `host`, its mailboxes, its mail program, its logs."""

    def __init__(self, lab: Lab, loop: LoopThread, endpoints: list[Endpoint]) -> None:
        self._lab = lab
        self._loop = loop
        self._endpoints = endpoints
        self._closed = False
        self.sends: list[SendResult] = []

    @property
    def id(self) -> str:
        """The lab's id (the `smtplab.lab` label on docker)."""
        return self._lab.id

    @property
    def backend(self) -> str:
        """'local' or 'docker'."""
        return self._lab.backend

    @property
    def scenario(self) -> Scenario:
        """The scenario running."""
        return self._lab.topology.scenario

    @property
    def host(self) -> str:
        """The address every endpoint listens on."""
        return self._endpoints[0].host if self._endpoints else LOOPBACK

    @property
    def nodes(self) -> list[str]:
        """Every node of the lab."""
        return list(self._lab.topology.nodes)

    def port(self, node: str, port: int) -> int:
        """The host port that stands for `node`'s `port`, as the customer's network sees it
        (a port the ISP drops times out, one it rejects refuses).

        Raises:
            UsageError: the node does not listen on that port.
        """
        for endpoint in self._endpoints:
            if endpoint.node == node and endpoint.lab_port == port:
                return endpoint.port
        known = ", ".join(f"{e.node}:{e.lab_port}" for e in self._endpoints) or "none"
        raise UsageError(f"lab {self.id} has no endpoint {node}:{port}; endpoints: {known}")

    def tls(self, node: str) -> TlsDetails:
        """The lab CA file and `node`'s server name, for SNI and certificate checks."""
        hostname = self._lab.topology.nodes[node].hostname if node in self.nodes else None
        if hostname is None:
            raise UsageError(f"lab {self.id} has no server node {node!r}")
        ca_file = self._lab.ca_file
        if ca_file is None:
            raise UsageError(f"lab {self.id} issued no certificates")
        return TlsDetails(ca_file, hostname)

    def mailbox(self, address: str) -> Mailbox:
        """`address`'s mailbox on the mail server(s) holding its domain (DSNs included).

        Raises:
            UsageError: no mail server of the lab holds the address's domain.
        """
        from lab.runs import mail_hosts

        hosts = mail_hosts(self._lab, address)
        if not hosts:
            raise UsageError(f"no mail server of lab {self.id} holds {address}'s domain")

        def read() -> list[bytes]:
            return [raw for node in hosts for raw in self._lab.mailbox(node, address)]

        return Mailbox(address, read)

    def send(self, **changes: Any) -> SendResult:
        """Run the customer's mail program once, its settings changed by `changes`
        (field names of the scenario's client `settings`; `sender` for `from`)."""
        settings = self.scenario.client[1].settings.model_copy(update=changes)
        result = self._loop.run(self._lab.send(settings), timeout=CALL_TIMEOUT)
        self.sends.append(result)
        return result

    @property
    def transcript(self) -> str:
        """The client side of every `send` so far, swaks-like, one session after another."""
        return "\n\n".join(result.transcript.render() for result in self.sends)

    def events(self, node: str) -> list[dict[str, Any]]:
        """What `node` logged so far (its decisions: DNS answers, SMTP replies, retries)."""
        return self._lab.events(node)

    def data_dir(self, node: str) -> Path:
        """Where the host can read `node`'s files (mailboxes, queue, event log)."""
        return self._lab.data_dir(node)

    def logs(self) -> dict[str, str]:
        """Every node's log as text: its events, and on docker its container's output."""
        found: dict[str, str] = {}
        container_logs = getattr(self._lab, "logs", None)
        for node in self.nodes:
            parts = []
            with contextlib.suppress(Exception):
                parts = [json.dumps(event) for event in self._lab.events(node)]
            if callable(container_logs):
                with contextlib.suppress(Exception):
                    parts.append(str(container_logs(node, tail=200)).rstrip())
            found[node] = "\n".join(part for part in parts if part) or "(nothing logged)"
        return found

    def close(self) -> None:
        """Take the lab down and remove what it created; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._lab.down(), timeout=CALL_TIMEOUT)
        finally:
            self._loop.close()
            with _OPEN_LOCK:
                _OPEN.pop(id(self), None)

    def __enter__(self) -> LabHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def start_lab(scenario: Scenario, backend: Backend) -> LabHandle:
    """Start `scenario` on `backend` with endpoints on 127.0.0.1; on failure nothing stays."""
    loop = LoopThread(f"smtplab-{scenario.id}")

    async def up() -> tuple[Lab, list[Endpoint]]:
        lab = await backend.up(backend.plan(scenario))
        try:
            return lab, await lab.publish_endpoints(LOOPBACK)
        except BaseException:
            await lab.down()
            raise

    try:
        lab, endpoints = loop.run(up(), timeout=START_TIMEOUT)
    except BaseException:
        loop.close()
        raise
    handle = LabHandle(lab, loop, endpoints)
    with _OPEN_LOCK:
        _OPEN[id(handle)] = handle
    return handle


@atexit.register
def _close_open_labs() -> None:
    """Labs a crashed or interrupted test run did not close."""
    with _OPEN_LOCK:
        handles = list(_OPEN.values())
    for handle in handles:
        with contextlib.suppress(Exception):
            handle.close()
