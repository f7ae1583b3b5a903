"""What the diagnosis engine may touch: a `DiagnosisTarget`, for a lab or for any server.

The engine never sees a scenario, its id or its `expect` block: it gets a
connector from the customer's vantage point, a resolver, the trust anchor,
the name the mail program greets with, and (for labs) a way to follow an
accepted message and to re-send with corrected settings. Verdicts therefore
come from evidence only, and the same engine serves `smtplab diagnose
SCENARIO` (`LabTarget`) and `smtplab diagnose --server HOST` (`ServerTarget`).

Two more things a support agent would learn by asking, rather than by probing,
are part of a target: the customer's own login (`account`, for a remedy that
turns authentication on) and the addresses known to exist (`directory`, for
"did you mean …" when a recipient is mistyped). A bare server knows neither
beyond what the user typed.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.resolver

from lab.net import Connector, DirectConnector, Streams
from lab.nodes.config import ClientConfig, MailServerConfig
from lab.nodes.mailserver.routing import match_connector
from lab.nodes.resolver import (
    DnsTemporaryFailure,
    NameNotFound,
    NoRecords,
    mail_exchangers,
    resolve_addresses,
)
from lab.scenario.model import MailSettings
from lab.smtp.mail_program import send_mail
from lab.smtp.result import SendResult
from lab.topology import Action, path_verdict

if TYPE_CHECKING:
    from lab.runs import RunReport
    from lab.runtime.base import Lab


@dataclass(frozen=True)
class Account:
    """What the customer knows of their mail account: the login, and the provider's server."""

    user: str
    password: str = field(repr=False)
    server: str | None = None  # the provider's documented outgoing server, when known


# Events of a relay's log that tell what became of a queued message.
DELIVERY_EVENTS = frozenset(
    {"queued", "route", "delivery-attempt", "deferred", "delivered", "bounced", "expired"}
)


class DiagnosisTarget(Protocol):
    """Everything the diagnosis engine needs from the world it diagnoses."""

    @property
    def name(self) -> str:
        """What is diagnosed, for reports: "lab blocked-port-25 (local)", "server mx.example"."""
        ...

    @property
    def connector(self) -> Connector:
        """Opens TCP connections from where the customer's mail program runs."""
        ...

    @property
    def ca_file(self) -> Path | None:
        """The trust anchor for certificate checks (None: the system's)."""
        ...

    @property
    def helo(self) -> str:
        """The name the mail program greets with (its computer's name)."""
        ...

    @property
    def can_follow(self) -> bool:
        """True when `follow` can tell what became of an accepted message."""
        ...

    async def resolve(self, name: str, rdtype: str = "A") -> list[str]:
        """Records of `name` as text (A: addresses; MX: "pref host", [] for a null MX).

        Raises:
            lab.nodes.resolver.DnsLookupError: NXDOMAIN, NODATA or a temporary failure.
        """
        ...

    async def follow(self, settings: MailSettings, send: SendResult) -> RunReport | None:
        """Follow an accepted message to delivery, bounce or expiry; None when impossible."""
        ...

    def delivery_events(self, message_id: str) -> list[dict[str, Any]]:
        """The relays' log events about the message with this Message-ID, oldest first."""
        ...

    def node_for(self, address: str, port: int | None = None) -> str | None:
        """The lab node at `address` (or the router deciding about `port`), if known."""
        ...

    def middlebox(self, address: str, port: int) -> str | None:
        """The router a connection to `address:port` crosses, if known."""
        ...

    def configured_route(self, address: str, domain: str) -> dict[str, Any] | None:
        """The route event the mail server at `address` would log for `domain`, from its
        configuration (no DNS): for servers that log none; None when unknown."""
        ...

    async def send(self, settings: MailSettings) -> SendResult:
        """Send once as the mail program would, with `settings` (the fix's re-send)."""
        ...

    def account(self, settings: MailSettings) -> Account | None:
        """The customer's own login (and provider's server), as they would give it when asked."""
        ...

    def directory(self) -> list[str]:
        """Addresses known to exist (for correcting typos); empty when unknown."""
        ...

    def outsider(self) -> tuple[str, Connector] | None:
        """A host outside the customer's networks (who, and connections from it), for the
        open-relay audit; None when there is none to probe from."""
        ...


# --- a lab -----------------------------------------------------------------------------------


class LabTarget:
    """A running lab, seen from its client node (the customer's computer)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.topology = lab.topology
        self.client = lab.topology.client.name
        config = lab.topology.client.config
        self._helo = config.hostname if isinstance(config, ClientConfig) else "client"

    @property
    def name(self) -> str:
        """`lab <scenario> (<backend>)`."""
        return f"lab {self.topology.scenario.id} ({self.lab.backend})"

    @property
    def connector(self) -> Connector:
        """The client node's connector: router policies apply."""
        return self.lab.connector_for(self.client)

    @property
    def ca_file(self) -> Path | None:
        """The lab CA."""
        # Read defensively: a backend may not publish its CA yet (then verification uses
        # the system store and lab certificates fail, which the report makes visible).
        ca_file = getattr(self.lab, "ca_file", None)
        return ca_file if isinstance(ca_file, Path) else None

    @property
    def helo(self) -> str:
        """The client node's host name."""
        return self._helo

    @property
    def can_follow(self) -> bool:
        """Labs keep every mailbox: messages can be followed."""
        return True

    async def resolve(self, name: str, rdtype: str = "A") -> list[str]:
        """Ask the lab DNS from the client node."""
        return await self.lab.resolve(self.client, name, rdtype)

    async def follow(self, settings: MailSettings, send: SendResult) -> RunReport | None:
        """`lab.runs.follow` on a report built from the probe's own submission."""
        from lab.runs import RunReport, follow

        report = RunReport(
            scenario=self.topology.scenario.id,
            backend=self.lab.backend,
            settings=settings,
            send=send,
            outcome=send.outcome,
            stage=send.stage,
            code=send.code,
            enhanced=send.enhanced,
            text=send.text,
        )
        return await follow(self.lab, report)

    def delivery_events(self, message_id: str) -> list[dict[str, Any]]:
        """Queue events of every mail server for the message (found by its "queued" event)."""
        found: list[dict[str, Any]] = []
        for name, node in self.topology.nodes.items():
            if not isinstance(node.config, MailServerConfig):
                continue
            events = self.lab.events(name)
            queue_ids = {
                event.get("queue_id")
                for event in events
                if event.get("event") == "queued" and event.get("message_id") == message_id
            }
            found += [
                {**event, "node": name}
                for event in events
                if event.get("event") in DELIVERY_EVENTS and event.get("queue_id") in queue_ids
            ]
        return sorted(found, key=lambda event: float(event.get("ts", 0.0)))

    def node_for(self, address: str, port: int | None = None) -> str | None:
        """The node at `address`; for a dropped or refused port, the router that did it."""
        try:
            ip = IPv4Address(address)
        except ValueError:
            return None
        if port is not None:
            verdict = path_verdict(self.topology, self.client, address, port)
            stopped = (Action.DROP, Action.REJECT, Action.NET_UNREACHABLE)
            if verdict.action in stopped and verdict.by is not None:
                return verdict.by
            if verdict.target is not None:
                return verdict.target
        found = self.topology.node_at(ip)
        return found[0].name if found else None

    def middlebox(self, address: str, port: int) -> str | None:
        """The router between the client and `address:port`."""
        return path_verdict(self.topology, self.client, address, port).by

    def configured_route(self, address: str, domain: str) -> dict[str, Any] | None:
        """The relay's connector or smart host for `domain` by its settings, else MX."""
        name = self.node_for(address)
        config = self.topology.nodes[name].config if name else None
        if not isinstance(config, MailServerConfig):
            return None
        route: dict[str, Any] = {"event": "route", "node": name, "domain": domain}
        matched = match_connector(domain, config.routing.connectors)
        if matched is not None:
            connector, pattern = matched
            hop = f"{connector.to.host}:{connector.to.port}"
            return {**route, "method": "connector", "pattern": pattern, "hops": [hop]}
        smarthost = config.routing.smarthost
        if smarthost is not None:
            return {**route, "method": "smarthost", "hops": [f"{smarthost.host}:{smarthost.port}"]}
        return {**route, "method": "mx"}

    async def send(self, settings: MailSettings) -> SendResult:
        """The client node sends."""
        return await self.lab.send(settings)

    def account(self, settings: MailSettings) -> Account | None:
        """The customer's account at their provider, from the lab's mail servers.

        The provider is the server holding the sender's mailbox (else one that
        knows the sender, or the configured login, as a user). The login is the
        configured one when it is right there, else the one named after the
        sender; the server is the provider's host name.
        """
        configured = settings.auth
        sender = settings.sender.lower()
        best: tuple[int, MailServerConfig] | None = None
        for node in self.topology.nodes.values():
            config = node.config
            if not isinstance(config, MailServerConfig):
                continue
            logins = {user.lower() for user in config.users}
            rank = 0
            if sender in {box.lower() for box in config.mailboxes} and logins:
                rank = 3
            elif sender in logins:
                rank = 2
            elif configured is not None and configured.user.lower() in logins:
                rank = 1
            if rank and (best is None or rank > best[0]):
                best = (rank, config)
        if best is None:
            if configured is None:
                return None
            return Account(configured.user, configured.password)
        config = best[1]
        users = config.users
        if configured is not None and users.get(configured.user) == configured.password:
            return Account(configured.user, configured.password, config.hostname)
        owner = next((user for user in users if user.lower() == sender), None)
        if owner is not None:
            return Account(owner, users[owner], config.hostname)
        if configured is not None:
            return Account(configured.user, configured.password, config.hostname)
        return None

    def directory(self) -> list[str]:
        """Every mailbox of every mail server in the lab."""
        addresses: list[str] = []
        for node in self.topology.nodes.values():
            if isinstance(node.config, MailServerConfig):
                addresses += list(node.config.mailboxes)
        return sorted(dict.fromkeys(addresses))

    def outsider(self) -> tuple[str, Connector] | None:
        """A running host on the internet side: not the client, not a router, on no network
        behind a router (the customer's), no mail server (a relay may trust its MX peers);
        the lab DNS first, as an auditor with no part in the mail flow."""
        inside = {spec.inside for _, spec in self.topology.routers()}
        outside = (n for n in self.topology.nodes.values() if not inside & set(n.addresses))
        candidates = [n for n in outside if n.running and n.kind in ("dns", "client")]
        chosen = min(candidates, key=lambda n: (n.kind != "dns", n.name), default=None)
        if chosen is None or chosen.name == self.client:
            return None
        return f"{chosen.name} ({chosen.address})", self.lab.connector_for(chosen.name)


# --- any server ------------------------------------------------------------------------------


class PortMapConnector:
    """Connects to logical ports where they really listen: {587: 40123}.

    For lab endpoints published on random host ports, and for tests that give
    a server on 127.0.0.1 "alternative ports" without binding 587 itself.
    """

    def __init__(self, mapping: dict[int, int], inner: Connector | None = None) -> None:
        self.mapping = dict(mapping)
        self.inner = inner or DirectConnector()

    async def open_connection(self, host: str, port: int, *, timeout: float) -> Streams:
        """Connect to the mapped port (unmapped ports as they are)."""
        return await self.inner.open_connection(host, self.mapping.get(port, port), timeout=timeout)


def system_resolver(timeout: float = 3.0) -> dns.asyncresolver.Resolver:
    """The host's resolver (resolv.conf), one attempt bounded by `timeout`."""
    resolver = dns.asyncresolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


def nameserver_resolver(
    host: str, port: int = 53, timeout: float = 3.0
) -> dns.asyncresolver.Resolver:
    """A resolver that asks only `host:port` (e.g. a lab DNS on 127.0.0.1)."""
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = port
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None
    return resolver


class ServerTarget:
    """Any SMTP server, diagnosed from this machine (`smtplab diagnose --server`).

    Args:
        resolver: how names are looked up (default: the system's).
        connector: how connections are opened (default: plain sockets).
        ca_file: extra trust anchor (None: the system's store).
        helo: the name to greet with (default: this machine's host name).
        label: how reports name the target.
    """

    def __init__(
        self,
        *,
        resolver: dns.asyncresolver.Resolver | None = None,
        connector: Connector | None = None,
        ca_file: Path | None = None,
        helo: str | None = None,
        label: str = "server",
    ) -> None:
        self._resolver = resolver
        self._connector = connector or DirectConnector()
        self._ca_file = ca_file
        self._helo = helo or socket.gethostname() or "localhost"
        self._label = label

    @property
    def name(self) -> str:
        """What the report calls it."""
        return self._label

    @property
    def connector(self) -> Connector:
        """Plain sockets from here (or what was given)."""
        return self._connector

    @property
    def ca_file(self) -> Path | None:
        """The trust anchor given on the command line."""
        return self._ca_file

    @property
    def helo(self) -> str:
        """This machine's name (or the one given)."""
        return self._helo

    @property
    def can_follow(self) -> bool:
        """A bare server keeps its queue to itself."""
        return False

    def _dns(self) -> dns.asyncresolver.Resolver:
        if self._resolver is None:
            try:
                self._resolver = system_resolver()
            except dns.resolver.NoResolverConfiguration as error:
                raise DnsTemporaryFailure("", "A", f"no resolver configured: {error}") from None
        return self._resolver

    async def resolve(self, name: str, rdtype: str = "A") -> list[str]:
        """A, MX and other records through the resolver, with the lab's error types."""
        resolver = self._dns()
        if rdtype == "A":
            return await resolve_addresses(resolver, name)
        if rdtype == "MX":
            answer = await mail_exchangers(resolver, name)
            return [f"{preference} {host}" for preference, host in answer.hosts]
        try:
            response = await resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN as error:
            raise NameNotFound(name, rdtype, "NXDOMAIN (domain does not exist)") from error
        except dns.resolver.NoAnswer as error:
            raise NoRecords(name, rdtype, f"no {rdtype} records (NODATA)") from error
        except dns.exception.DNSException as error:
            raise DnsTemporaryFailure(name, rdtype, str(error) or type(error).__name__) from error
        return [rdata.to_text() for rdata in response]

    async def follow(self, settings: MailSettings, send: SendResult) -> RunReport | None:
        """Unknown: what the server does next is not visible from here."""
        return None

    def delivery_events(self, message_id: str) -> list[dict[str, Any]]:
        """None are visible."""
        return []

    def node_for(self, address: str, port: int | None = None) -> str | None:
        """No topology."""
        return None

    def middlebox(self, address: str, port: int) -> str | None:
        """No topology."""
        return None

    def configured_route(self, address: str, domain: str) -> dict[str, Any] | None:
        """Unknown."""
        return None

    async def send(self, settings: MailSettings) -> SendResult:
        """Send like a mail program from this machine."""

        async def resolve(name: str) -> list[str]:
            # Inside: a missing resolver configuration is then a DNS failure of this send.
            return await resolve_addresses(self._dns(), name)

        return await send_mail(
            settings,
            connector=self._connector,
            resolve=resolve,
            helo=self._helo,
            ca_file=self._ca_file,
        )

    def account(self, settings: MailSettings) -> Account | None:
        """Only what was typed."""
        if settings.auth is None:
            return None
        return Account(settings.auth.user, settings.auth.password)

    def directory(self) -> list[str]:
        """Unknown."""
        return []

    def outsider(self) -> tuple[str, Connector] | None:
        """None: this machine is the only vantage point, and it is the customer's."""
        return None


__all__ = [
    "Account",
    "DiagnosisTarget",
    "LabTarget",
    "PortMapConnector",
    "ServerTarget",
    "nameserver_resolver",
    "system_resolver",
]
