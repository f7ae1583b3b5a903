"""The closed vocabularies of the scenario schema, one StrEnum each: a YAML value outside one is
a validation error naming the allowed words, and node configs, node programs, the SMTP client
and the diagnosis engine reuse the same types."""

from __future__ import annotations

from enum import StrEnum


class PortPolicy(StrEnum):
    """What a router does with a new connection to a port."""

    ALLOW = "allow"
    DROP = "drop"  # silently discarded: the client waits out its connect timeout
    REJECT = "reject"  # answered with a reset: the client sees "connection refused"


# A router's `outage` that answers every connection with ICMP "network unreachable" (the
# ISP's uplink is down) instead of dropping it (`outage: true`).
OUTAGE_UNREACHABLE = "unreachable"


class ListenerTls(StrEnum):
    """TLS on a server listener."""

    NONE = "none"
    STARTTLS = "starttls"  # plain connection, STARTTLS offered in EHLO
    IMPLICIT = "implicit"  # TLS from the first byte (port 465, "SMTPS")


class Security(StrEnum):
    """TLS as a mail program is configured to use it."""

    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


class AuthMechanism(StrEnum):
    """SASL mechanisms the lab's servers and client speak."""

    PLAIN = "PLAIN"
    LOGIN = "LOGIN"
    CRAM_MD5 = "CRAM-MD5"


class AuthPolicy(StrEnum):
    """Whether a listener offers or demands SMTP AUTH."""

    OFF = "off"
    OFFERED = "offered"
    REQUIRED = "required"


class CertificateFault(StrEnum):
    """Deliberately broken server certificates."""

    NONE = "none"
    EXPIRED = "expired"
    WRONG_NAME = "wrong-name"
    SELF_SIGNED = "self-signed"


class TlsVersions(StrEnum):
    """The TLS protocol versions a listener speaks."""

    MODERN = "modern"  # TLS 1.2 and 1.3
    # TLS 1.0 and 1.1 only, as servers not updated since the 2010s: every current client
    # (OpenSSL 3, Windows since 2020, Python >= 3.10) refuses to go below TLS 1.2.
    LEGACY = "legacy"


class Flavour(StrEnum):
    """Whose wording a mail server's replies use (codes stay the lab's): `lab/flavours.yaml`."""

    LAB = "lab"
    POSTFIX = "postfix"
    EXIM = "exim"
    EXCHANGE = "exchange"
    GMAIL = "gmail"


class SendAsPolicy(StrEnum):
    """Whether an authenticated user may use any envelope sender."""

    ANY = "any"
    # MAIL FROM must be the login name (or login@domain for a login without "@"):
    # Exchange Online's "550 5.7.60 ... send as this sender".
    ENFORCE = "enforce"


class VrfyPolicy(StrEnum):
    """How a mail server answers VRFY (RFC 5321 §3.5.3, §7.3)."""

    # Postfix's default (disable_vrfy_command = no): the recipient checks of RCPT decide,
    # so a known mailbox gets 252 2.0.0 and an unknown one RCPT's own 550 5.1.1.
    ENABLED = "enabled"
    # 252 for every address, known or not, as RFC 5321 §7.3 suggests to a site that hides
    # its users (Exchange Online, Gmail): the answer says nothing about the mailbox.
    AMBIGUOUS = "ambiguous"
    # Postfix's disable_vrfy_command = yes: 502 5.5.1.
    DISABLED = "disabled"


class DnsFault(StrEnum):
    """How the lab DNS misbehaves for a name or zone."""

    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"  # no answer at all


class MailboxState(StrEnum):
    """The state of a mailbox on a receiving server."""

    ACTIVE = "active"
    FULL = "full"  # temporary: 452 4.2.2
    OVER_QUOTA = "over-quota"  # permanent: 552 5.2.2
    DISABLED = "disabled"  # 550 5.2.1


class Outcome(StrEnum):
    """What finally happened to a message, as the sender experiences it."""

    DELIVERED = "delivered"
    BOUNCED = "bounced"  # accepted, then returned to the sender with a DSN
    DEFERRED = "deferred"  # accepted and still queued when the run ended
    REJECTED = "rejected"  # a server answered a command with a 4xx/5xx reply
    CONNECT_TIMEOUT = "connect-timeout"
    CONNECT_REFUSED = "connect-refused"
    UNREACHABLE = "unreachable"  # no route to the host
    DNS_FAILURE = "dns-failure"  # the server name did not resolve
    NO_BANNER = "no-banner"  # TCP connected, no greeting before the timeout
    CONNECTION_LOST = "connection-lost"  # the server closed the connection
    TLS_FAILED = "tls-failed"  # handshake or certificate failure
    AUTH_UNAVAILABLE = "auth-unavailable"  # client cannot authenticate: AUTH not offered


class Stage(StrEnum):
    """The steps of a submission, in order, and what follows the hand-off."""

    DNS = "dns"
    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DELIVERY = "delivery"  # relay queue, onward hops, bounce


class HopKind(StrEnum):
    """Which leg of the mail's route a fault lies on (what `diagnose` reports as the hop)."""

    SUBMISSION = "submission"  # the mail program to its submission server
    SMART_HOST = "smart host"  # the relay to the smart host every message goes through
    CONNECTOR = "connector"  # the relay to a partner relay, by the recipient's address space
    BACKUP_MX = "backup MX"  # a lower-priority MX that took the message for the recipient
    RECIPIENT_MX = "recipient MX"  # the last relay to the recipient domain's mail server
    PATH = "path"  # the network in between: a router, a line, a middlebox


class Level(StrEnum):
    """How much a trainee must know to solve a case."""

    BEGINNER = "beginner"
    INTERMEDIATE = "intermediate"
    ADVANCED = "advanced"


class MtaSoftware(StrEnum):
    """Which program serves a mail server node."""

    LAB = "lab"  # the lab's own aiosmtpd server (`lab.nodes.mailserver`)
    POSTFIX = "postfix"  # real Postfix, configured from the same policy (`lab.nodes.postfix`)
