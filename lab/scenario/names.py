"""The text of a scenario that goes on the wire: hostnames, DNS names, mail addresses, HELO
names, `host[:port]` targets, login names and header text. Each is a constrained `str`
whose validator says precisely what is wrong, so that what `validate` accepts the servers,
the DNS and the mail program can use (a hostname with a line break or an umlaut, a port
that is not a number, once crashed `run` with a traceback)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

from lab.addresses import is_ip_literal

_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# DNS owner names may also carry "_" (_dmarc, _spf) and a leading "*" label (wildcards).
_DNS_LABEL = re.compile(r"^([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?|\*)$")
MAX_NAME_LENGTH = 253
MAX_ADDRESS_LENGTH = 254  # RFC 5321 §4.5.3.1.3, path minus the brackets
MAX_HELO_LENGTH = 255


def _plain_ascii(value: str, what: str) -> None:
    if not value:
        raise ValueError(f"{what} cannot be empty")
    if not value.isascii():
        raise ValueError(f"{what} must be ASCII (write an internationalised name as xn--...)")
    if not value.isprintable():
        raise ValueError(f"{what} cannot hold a line break or other control character")


def check_hostname(value: str) -> str:
    """A host name: dot-separated labels of letters, digits and inner '-' (RFC 1123)."""
    _labels(value, "a hostname", _LABEL, "letters, digits and inner '-'")
    return value


def check_dns_name(value: str) -> str:
    """A DNS owner name: like a hostname, '_' allowed, a leading '*' label for wildcards."""
    _labels(value, "a DNS name", _DNS_LABEL, "letters, digits, '_' and inner '-'")
    return value


def _labels(value: str, what: str, pattern: re.Pattern[str], allowed: str) -> None:
    _plain_ascii(value, what)
    if len(value.rstrip(".")) > MAX_NAME_LENGTH:
        raise ValueError(f"{what} is at most {MAX_NAME_LENGTH} characters")
    for label in value.removesuffix(".").split("."):
        if not pattern.match(label):
            raise ValueError(
                f"{what} is dot-separated labels of 1-63 {allowed}; bad label {label!r}"
            )


def check_host(value: str) -> str:
    """A server as a mail program takes it: a hostname or an IP address ([...] or bare)."""
    return value if is_ip_literal(value) else check_hostname(value)


def check_host_port(value: str) -> str:
    """'host' or 'host:port', the port a number from 1 to 65535."""
    host, colon, port = value.rpartition(":") if ":" in value else (value, "", "")
    check_host(host)
    if colon and not (port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"the port after ':' must be a number from 1 to 65535, not {port!r}")
    return value


def check_domain_pattern(value: str) -> str:
    """A recipient domain a connector matches: 'example.net' or '*.net' (or '*')."""
    if value == "*":
        return value
    return "*." + check_hostname(value[2:]) if value.startswith("*.") else check_hostname(value)


def check_address(value: str) -> str:
    """A mail address as the lab's programs send it: local@domain, printable ASCII without
    spaces or angle brackets (SMTPUTF8 is not spoken)."""
    _plain_ascii(value, "a mail address")
    if len(value) > MAX_ADDRESS_LENGTH:
        raise ValueError(f"a mail address is at most {MAX_ADDRESS_LENGTH} characters")
    if any(char in value for char in " <>"):
        raise ValueError("a mail address has no spaces or angle brackets")
    local, at, domain = value.rpartition("@")
    if not at or not local:
        raise ValueError("a mail address is local-part@domain")
    check_host(domain)
    return value


def check_helo(value: str) -> str:
    """The name in EHLO/HELO: one word of printable ASCII (a hostname is usual, but a mail
    program may send a bad one on purpose: that is a scenario too)."""
    _plain_ascii(value, "a HELO name")
    if " " in value:
        raise ValueError("a HELO name is one word, without spaces")
    if len(value) > MAX_HELO_LENGTH:
        raise ValueError(f"a HELO name is at most {MAX_HELO_LENGTH} characters")
    return value


def check_line(value: str) -> str:
    """Text sent in one protocol line or header (a login, a subject): no line breaks."""
    if not value.isprintable():
        raise ValueError("cannot hold a line break or other control character")
    return value


def check_prose(value: str) -> str:
    """Text shown to people (a title, a ticket): line breaks and tabs, but no other control
    characters, which a terminal would obey ("\x1b[2J" clears the screen)."""
    if not value.replace("\n", "").replace("\t", "").isprintable():
        raise ValueError("cannot hold control characters other than line breaks and tabs")
    return value


Hostname = Annotated[str, AfterValidator(check_hostname)]
DnsName = Annotated[str, AfterValidator(check_dns_name)]
Host = Annotated[str, AfterValidator(check_host)]
HostPort = Annotated[str, AfterValidator(check_host_port)]
DomainPattern = Annotated[str, AfterValidator(check_domain_pattern)]
Address = Annotated[str, AfterValidator(check_address)]
Helo = Annotated[str, AfterValidator(check_helo)]
Line = Annotated[str, AfterValidator(check_line)]
Prose = Annotated[str, AfterValidator(check_prose)]
