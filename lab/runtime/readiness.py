"""When a lab node counts as up: readiness checks as objects, per role, composable.

Modelled on testcontainers' wait strategies: a `WaitStrategy` makes one
attempt at a time against a `WaitTarget` (a node of a running lab) and
`wait_until_ready` repeats it (every `poll_interval`; connection attempts
back off up to `MAX_POLL_INTERVAL`) until it succeeds, the node's process
exits, or `startup_timeout` runs out. Never a fixed sleep: a lab is up as soon
as every check has seen its node answer.

- mail server: a greeting read on every plain listener, a TLS handshake and
  then the greeting on every implicit-TLS one (`SmtpGreeting`);
- DNS: an SOA question answered (`DnsAnswers`);
- router: its `router-ready` event (`EventLogged`);
- anything started through the lab's init script: its "routes set" marker
  file (`FileCreated`; or its line in the container log, `LogLine`), so no
  program can send before its routes point where the topology says.

A timeout or an exit raises `LabStartError` with the node's container log and
the tail of its events.jsonl, so the reason is in the message itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from lab.errors import LabError, LabStartError

if TYPE_CHECKING:
    from lab.net import Connector
    from lab.nodes.config import DnsConfig
    from lab.topology import NodePlan, Topology

STARTUP_TIMEOUT = 15.0
POLL_INTERVAL = 0.05
# An attempt that opens a connection costs a thread hop and a socket in the node's namespace:
# thirty labs starting at once must not spend a core on asking. Those strategies wait longer
# after each failure, up to this; a look at a file (`cheap`) keeps the first interval.
MAX_POLL_INTERVAL = 0.25
POLL_BACKOFF = 1.5
ATTEMPT_TIMEOUT = 1.0  # one connect or one read; the strategy retries until its deadline
LOG_LINES = 30  # of the container log, in a startup error
EVENT_LINES = 10  # of events.jsonl, in a startup error
# A deliberately slow greeting cannot be waited for: an accepted connection is enough.
SLOW_GREETING = 0.5
_REPLY = re.compile(rb"^[2-5]\d\d[ -]")


class NotReady(Exception):
    """One attempt found the node not ready yet; the message says what was missing."""


class WaitTarget(Protocol):
    """What a strategy may look at: one node of a lab that is starting."""

    @property
    def name(self) -> str:
        """The node's name."""
        ...

    def connector(self) -> Connector:
        """Opens TCP connections from the node's own vantage point."""
        ...

    def datagram_socket(self) -> socket.socket:
        """A UDP socket in the node's network (for DNS questions)."""
        ...

    def events(self) -> list[dict[str, Any]]:
        """What the node's program logged so far."""
        ...

    def logs(self, tail: int = LOG_LINES) -> str:
        """The last lines the node's process wrote (stdout and stderr)."""
        ...

    def exited(self) -> str | None:
        """None while the node's process runs, else how it ended ("exited with 1")."""
        ...


class WaitStrategy(ABC):
    """One kind of readiness check; `wait_until_ready` repeats `attempt` until it succeeds."""

    cheap = False  # an attempt only reads a host file: no backoff between attempts

    def __init__(self) -> None:
        self.startup_timeout = STARTUP_TIMEOUT
        self.poll_interval = POLL_INTERVAL

    def with_startup_timeout(self, seconds: float) -> Self:
        """Give up after `seconds` (a `LabStartError` with the node's log)."""
        self.startup_timeout = seconds
        return self

    def with_poll_interval(self, seconds: float) -> Self:
        """Wait `seconds` between failed attempts."""
        self.poll_interval = seconds
        return self

    @abstractmethod
    def describe(self) -> str:
        """What is waited for, for the error message ("a greeting on 10.0.0.5:25")."""

    @abstractmethod
    async def attempt(self, target: WaitTarget) -> None:
        """One try.

        Raises:
            NotReady: not yet (a connect refused or timed out counts as `OSError`, also fine).
            LabStartError: it will never be ready (the node reported a failure).
        """

    async def wait_until_ready(self, target: WaitTarget) -> None:
        """Attempt until ready.

        Raises:
            LabStartError: the node's process exited, reported a failure, or the
                timeout passed; with the node's log.
        """
        deadline = time.monotonic() + self.startup_timeout
        last = "no attempt finished"
        interval = self.poll_interval
        while True:
            try:
                await self.attempt(target)
                return
            except LabStartError:
                raise
            except (NotReady, OSError, TimeoutError, EOFError, LabError) as error:
                # LabError: e.g. the node's process is not running (yet, or any more).
                last = str(error) or type(error).__name__
            # An exited process will never answer: say so now rather than at the deadline.
            ended = await asyncio.to_thread(target.exited)
            if ended is not None:
                raise LabStartError(
                    f"node {target.name} {ended} before {self.describe()}"
                    + await asyncio.to_thread(node_report, target)
                )
            if time.monotonic() >= deadline:
                raise LabStartError(
                    f"node {target.name} not ready after {self.startup_timeout:g} s: "
                    f"no {self.describe()} ({last})" + await asyncio.to_thread(node_report, target)
                )
            await asyncio.sleep(interval)
            if not self.cheap:
                interval = min(interval * POLL_BACKOFF, max(MAX_POLL_INTERVAL, self.poll_interval))


class AllOf(WaitStrategy):
    """Every one of several strategies, waited for concurrently."""

    def __init__(self, *strategies: WaitStrategy) -> None:
        super().__init__()
        self.strategies = list(strategies)

    def with_startup_timeout(self, seconds: float) -> Self:
        """Also for every part."""
        for strategy in self.strategies:
            strategy.with_startup_timeout(seconds)
        return super().with_startup_timeout(seconds)

    def with_poll_interval(self, seconds: float) -> Self:
        """Also for every part."""
        for strategy in self.strategies:
            strategy.with_poll_interval(seconds)
        return super().with_poll_interval(seconds)

    def describe(self) -> str:
        """The parts, joined."""
        return " and ".join(strategy.describe() for strategy in self.strategies)

    async def attempt(self, target: WaitTarget) -> None:
        """Each part once, in order."""
        for strategy in self.strategies:
            await strategy.attempt(target)

    async def wait_until_ready(self, target: WaitTarget) -> None:
        """Each part with its own deadline, concurrently; the first failure ends the wait."""
        await asyncio.gather(*(strategy.wait_until_ready(target) for strategy in self.strategies))


class SmtpGreeting(WaitStrategy):
    """A mail server's greeting on one listener: the proof that its program serves the port.

    Any SMTP reply counts (a server configured to refuse service greets with
    554); on an implicit-TLS listener the TLS handshake comes first (the
    certificate is not checked: a scenario may break it on purpose). A
    listener whose greeting is deliberately late (tarpit, slow banner) is ready
    once it accepts the connection.
    """

    def __init__(
        self, host: str, port: int, *, implicit_tls: bool = False, slow_greeting: bool = False
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.slow_greeting = slow_greeting

    def describe(self) -> str:
        """E.g. "SMTP greeting over TLS on 10.0.0.5:465"."""
        how = " over TLS" if self.implicit_tls else ""
        what = "accepted connection" if self.slow_greeting else "SMTP greeting"
        return f"{what}{how} on {self.host}:{self.port}"

    async def attempt(self, target: WaitTarget) -> None:
        """Connect, (handshake,) read one reply line, say QUIT."""
        reader, writer = await target.connector().open_connection(
            self.host, self.port, timeout=ATTEMPT_TIMEOUT
        )
        try:
            if self.implicit_tls:
                try:
                    await asyncio.wait_for(
                        writer.start_tls(_any_certificate(), server_hostname=None),
                        ATTEMPT_TIMEOUT,
                    )
                except ssl.SSLError:
                    # The server answered in TLS, just not in a version or cipher this
                    # host's OpenSSL still speaks (a TLS 1.0-only listener): it serves.
                    return
            if self.slow_greeting:
                return
            line = await asyncio.wait_for(reader.readline(), ATTEMPT_TIMEOUT)
            if not _REPLY.match(line):
                raise NotReady(f"greeted with {line[:80]!r}")
            writer.write(b"QUIT\r\n")
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), ATTEMPT_TIMEOUT)


def _any_certificate() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class DnsAnswers(WaitStrategy):
    """A DNS server's answer to an SOA question for one of its zones, over UDP."""

    def __init__(self, server: str, zone: str, port: int = 53) -> None:
        super().__init__()
        self.server = server
        self.zone = zone
        self.port = port

    def describe(self) -> str:
        """E.g. "SOA answer for example.com. from 10.0.0.3:53"."""
        return f"SOA answer for {self.zone} from {self.server}:{self.port}"

    async def attempt(self, target: WaitTarget) -> None:
        """Ask once; NOERROR with the SOA record is ready."""
        import dns.message
        import dns.rcode
        import dns.rdatatype

        query = dns.message.make_query(self.zone, "SOA")
        loop = asyncio.get_running_loop()
        sock = await asyncio.to_thread(target.datagram_socket)
        with sock:
            sock.setblocking(False)
            # Connected, so that an ICMP "port unreachable" (DNS not started yet) fails
            # the receive at once instead of waiting out the timeout.
            await loop.sock_connect(sock, (self.server, self.port))
            await loop.sock_sendall(sock, query.to_wire())
            wire = await asyncio.wait_for(loop.sock_recv(sock, 65535), ATTEMPT_TIMEOUT)
        answer = dns.message.from_wire(wire)
        if answer.rcode() != dns.rcode.NOERROR:
            raise NotReady(f"{dns.rcode.to_text(answer.rcode())} for SOA {self.zone}")
        if not any(rrset.rdtype == dns.rdatatype.SOA for rrset in answer.answer):
            raise NotReady(f"no SOA record for {self.zone} in the answer")


class EventLogged(WaitStrategy):
    """An event in the node's events.jsonl (the router's `router-ready`)."""

    cheap = True

    def __init__(self, event: str, *, failure: str | None = None) -> None:
        super().__init__()
        self.event = event
        self.failure = failure

    def describe(self) -> str:
        """E.g. "router-ready event"."""
        return f"{self.event} event"

    async def attempt(self, target: WaitTarget) -> None:
        """Read the log once."""
        for event in await asyncio.to_thread(target.events):
            if event.get("event") == self.event:
                return
            if self.failure is not None and event.get("event") == self.failure:
                raise LabStartError(
                    f"node {target.name} failed: {event.get('error')}"
                    + await asyncio.to_thread(node_report, target)
                )
        raise NotReady(f"no {self.event} event yet")


class LogLine(WaitStrategy):
    """A line in the node's container log (the init script's marker)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def describe(self) -> str:
        """E.g. "log line 'smtplab-init: routes set'"."""
        return f"log line {self.text!r}"

    async def attempt(self, target: WaitTarget) -> None:
        """Read the log once."""
        if self.text not in await asyncio.to_thread(target.logs, 200):
            raise NotReady(f"no {self.text!r} in the log yet")


class FileCreated(WaitStrategy):
    """A file the node creates where the host sees it (the init script's routes-set marker
    in the lab's bind-mounted directory): checked without asking the engine."""

    cheap = True

    def __init__(self, path: Path, what: str) -> None:
        super().__init__()
        self.path = path
        self.what = what

    def describe(self) -> str:
        """E.g. "routes set (file /…/_signals/mx.routes-set)"."""
        return f"{self.what} (file {self.path})"

    async def attempt(self, target: WaitTarget) -> None:
        """Look once."""
        if not self.path.exists():
            raise NotReady(f"{self.path} not created yet")


# --- per role -------------------------------------------------------------------------------


def role_checks(node: NodePlan, topology: Topology) -> list[WaitStrategy]:
    """The checks that say `node`'s program serves, by role (none for a client or a
    switched-off host: they run no program, nor for one that comes back later: its firewall
    drops the checks until then)."""
    from lab.nodes.config import DnsConfig, MailServerConfig, RouterConfig
    from lab.scenario.model import ListenerTls

    config = node.config
    if not node.running or node.back_after is not None:
        return []
    if isinstance(config, RouterConfig):
        return [EventLogged("router-ready", failure="router-failed")]
    if isinstance(config, DnsConfig):
        return [DnsAnswers(str(node.address), _healthy_zone(config), config.port)]
    if isinstance(config, MailServerConfig):
        slow = config.tarpit or config.banner_delay >= SLOW_GREETING
        return [
            SmtpGreeting(
                str(node.address),
                listener.port,
                implicit_tls=listener.tls is ListenerTls.IMPLICIT,
                slow_greeting=slow,
            )
            for listener in config.listeners
        ]
    return []


def _healthy_zone(config: DnsConfig) -> str:
    """A zone the scenario did not break (a faulted zone may never answer): reverse zones
    of lab networks are always healthy, and there is one per network."""
    faults = [name.lower() for name in config.faults]

    def broken(zone: str) -> bool:
        zone = zone.lower()
        return any(zone == fault or zone.endswith("." + fault) for fault in faults)

    healthy = [zone for zone in config.zones if not broken(zone)]
    return (healthy or list(config.zones) or ["."])[0]


def node_report(target: WaitTarget) -> str:
    """The node's container log and the tail of its events, for an error message."""
    parts = []
    with contextlib.suppress(Exception):
        log = target.logs(LOG_LINES).strip()
        parts.append(f"\n--- {target.name}: container log (last {LOG_LINES} lines) ---\n")
        parts.append(log or "(empty)")
    with contextlib.suppress(Exception):
        events = target.events()[-EVENT_LINES:]
        parts.append(f"\n--- {target.name}: events.jsonl (last {EVENT_LINES}) ---\n")
        parts.append("\n".join(json.dumps(event) for event in events) or "(none)")
    return "".join(parts)


async def wait_all(checks: Iterable[tuple[WaitTarget, WaitStrategy]]) -> None:
    """Every (target, strategy) concurrently; the first failure cancels the rest.

    Raises:
        LabStartError: from the first check that failed.
    """
    tasks = [asyncio.ensure_future(strategy.wait_until_ready(t)) for t, strategy in checks]
    if not tasks:
        return
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
