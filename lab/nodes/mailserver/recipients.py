"""The RCPT decision of a mail server, without I/O: local mailbox, greylist or relay.

`RecipientPolicy` decides one recipient in a fixed order and returns the
`Decision` with the reply line to send; `Greylist` is its postgrey-like
memory of (client, sender, recipient) triplets. Both take an injected clock,
so they are tested as tables. The handler (`MailHandler.handle_RCPT`) asks
the recipient limit and the DNS checks first, then this policy.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from lab.addresses import domain_of, without_extension
from lab.nodes.config import GreylistConfig, MailServerConfig
from lab.replies import (
    S250_RECIPIENT_OK,
    S451_GREYLISTED,
    S452_MAILBOX_FULL,
    S550_MAILBOX_DISABLED,
    S550_UNKNOWN_RELAY_RECIPIENT,
    S550_USER_UNKNOWN,
    S552_OVER_QUOTA,
    S554_RELAY_DENIED,
    Reply,
)
from lab.scenario.model import MailboxState


class Decision(StrEnum):
    """What happens to one recipient; also the `decision` field of "rcpt" events."""

    LOCAL = "local"
    RELAY = "relay"
    USER_UNKNOWN = "user-unknown"
    MAILBOX_FULL = "mailbox-full"
    OVER_QUOTA = "over-quota"
    DISABLED = "disabled"
    GREYLISTED = "greylisted"
    RELAY_DENIED = "relay-denied"
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    # the DNS checks (`checks.Check` has the same values)
    UNKNOWN_CLIENT = "unknown-client"
    DNSBL_LISTED = "dnsbl-listed"
    SENDER_DOMAIN_UNKNOWN = "sender-domain-unknown"
    SPF_FAIL = "spf-fail"

    @property
    def accepted(self) -> bool:
        """True when the recipient is taken (for local delivery or for relaying)."""
        return self in (Decision.LOCAL, Decision.RELAY)


_STATE_DECISIONS: dict[MailboxState, tuple[Decision, Reply]] = {
    MailboxState.FULL: (Decision.MAILBOX_FULL, S452_MAILBOX_FULL),
    MailboxState.OVER_QUOTA: (Decision.OVER_QUOTA, S552_OVER_QUOTA),
    MailboxState.DISABLED: (Decision.DISABLED, S550_MAILBOX_DISABLED),
}


@dataclass
class Greylist:
    """The first (client, sender, recipient) attempt is refused; one after `delay` passes.

    A retry that comes too early is refused again without restarting the
    clock, as postgrey does. Triplets are remembered for the server's lifetime.
    """

    config: GreylistConfig
    clock: Callable[[], float]
    _first_seen: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def applies_to(self, recipient: str) -> bool:
        """Whether `recipient` is greylisted at all (an empty list means everyone).

        Entries are addresses; an entry without "@" stands for a whole domain.
        """
        wanted = self.config.recipients
        if not wanted:
            return True
        domain = domain_of(recipient)
        return any(entry.lower() in (recipient, domain) for entry in wanted)

    def passes(self, client: str, sender: str, recipient: str) -> bool:
        """True once the triplet was first seen at least `delay` seconds ago."""
        key = (client, sender, recipient)
        now = self.clock()
        first = self._first_seen.get(key)
        if first is None:
            self._first_seen[key] = now
            return False
        return now - first >= self.config.delay


class RecipientPolicy:
    """Decides RCPT for one server, in a fixed order (no I/O).

    Local domain → mailbox known? → mailbox state → greylist → accept.
    A relay domain (backup MX): in the recipient list, if there is one → accept for relaying.
    Other domains: relay when allowed (relays only), else "Relay access denied".
    """

    def __init__(
        self, config: MailServerConfig, *, can_relay: bool, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.domains = {domain.lower() for domain in config.domains}
        self.mailboxes = {address.lower(): state for address, state in config.mailboxes.items()}
        self.can_relay = can_relay and config.role == "relay"
        self.networks = [
            ipaddress.ip_network(cidr, strict=False) for cidr in config.permit_relay.networks
        ]
        self.greylist = Greylist(config.greylist, clock) if config.greylist else None
        self.relay_domains = (
            {domain.lower() for domain in config.relay_domains} if config.role == "relay" else set()
        )
        self.relay_recipients = (
            None
            if config.relay_recipients is None
            else {address.lower() for address in config.relay_recipients}
        )

    def is_local(self, address: str) -> bool:
        """True when `address`'s domain is one this server hosts mailboxes for."""
        return domain_of(address) in self.domains

    def mailbox_of(self, address: str) -> str | None:
        """The mailbox `address` is delivered to: itself, or without its +tag when the server
        has a recipient delimiter (RFC 5233); None when there is none."""
        recipient = address.lower()
        if recipient not in self.mailboxes:
            recipient = without_extension(recipient, self.config.recipient_delimiter)
        return recipient if recipient in self.mailboxes else None

    def has_mailbox(self, address: str) -> bool:
        """True when `address` is delivered to one of this server's mailboxes."""
        return self.mailbox_of(address) is not None

    def decide(
        self, address: str, *, sender: str, client: str, authenticated: bool
    ) -> tuple[Decision, str]:
        """The decision for recipient `address` and the reply line to send."""
        recipient = address.lower()
        if self.is_local(recipient):
            mailbox = self.mailbox_of(recipient)
            state = self.mailboxes.get(mailbox) if mailbox else None
            if state is None and self.config.catch_all:
                # Accept-then-bounce: the queue bounces it after DATA (`ingest`).
                return Decision.LOCAL, S250_RECIPIENT_OK(address=address)
            if state is None:
                return Decision.USER_UNKNOWN, S550_USER_UNKNOWN(address=address)
            if state in _STATE_DECISIONS:
                decision, reply = _STATE_DECISIONS[state]
                return decision, reply(address=address)
            greylist = self.greylist
            if (
                greylist is not None
                and greylist.applies_to(recipient)
                and not greylist.passes(client, sender.lower(), recipient)
            ):
                return Decision.GREYLISTED, S451_GREYLISTED(address=address)
            return Decision.LOCAL, S250_RECIPIENT_OK(address=address)
        if domain_of(recipient) in self.relay_domains:
            # A backup MX: it takes its domains from anyone. Without the list of addresses
            # that exist it takes every one, and must bounce the unknown later (backscatter).
            if self.relay_recipients is not None and recipient not in self.relay_recipients:
                return Decision.USER_UNKNOWN, S550_UNKNOWN_RELAY_RECIPIENT(address=address)
            return Decision.RELAY, S250_RECIPIENT_OK(address=address)
        if self.may_relay(client, authenticated=authenticated):
            return Decision.RELAY, S250_RECIPIENT_OK(address=address)
        return Decision.RELAY_DENIED, S554_RELAY_DENIED(address=address)

    def trusted(self, client: str, *, authenticated: bool) -> bool:
        """Authenticated, or from a network allowed to relay: Postfix's permit_sasl_authenticated
        and permit_mynetworks, which come before the DNS checks of the client."""
        return authenticated or self._permitted_network(client)

    def may_relay(self, client: str, *, authenticated: bool) -> bool:
        """Relays only: an authenticated session (if allowed) or a permitted network."""
        if not self.can_relay:
            return False
        if authenticated and self.config.permit_relay.authenticated:
            return True
        return self._permitted_network(client)

    def _permitted_network(self, client: str) -> bool:
        """Whether `client` is an address inside a network allowed to relay."""
        try:
            address = ipaddress.ip_address(client)
        except ValueError:
            return False
        return any(address in network for network in self.networks)
