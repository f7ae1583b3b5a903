"""How every layer reads a mail address's domain and a host given as an IP address.

One home for the small rules that the scenario checks, the servers, the mail
program, the diagnosis and the TUI all apply, so that they agree on the edge
cases (case, trailing dot, the null sender `<>`, brackets, `IPv6:` tags, a DSN's
`dns;` prefix). The
rules follow RFC 5321: domains compare case-insensitively (§2.4), the domain
is what follows the last "@" (§4.1.2), and an address literal is an IP address
in brackets, IPv6 ones tagged `IPv6:` (§4.1.3).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def domain_of(address: str) -> str:
    """The domain after the last "@", lower case, without `<>`, whitespace or a final dot;
    "" for the null sender and for an address with no "@"."""
    text = address.strip().removeprefix("<").removesuffix(">").strip()
    _, at, domain = text.rpartition("@")
    return domain.strip().lower().rstrip(".") if at else ""


def mta_host(field: str) -> str:
    """The host name in a DSN's Reporting-MTA or Remote-MTA ("dns; mx.example.net", RFC 3464
    §2.2.2; a bare name as it is), lower case, without a final dot."""
    return field.rpartition(";")[2].strip().lower().rstrip(".")


def host_in_domain(host: str, domain: str) -> bool:
    """Whether `host` is `domain` itself (its implicit MX) or a name below it, ignoring
    case and a final dot; never for an empty domain."""
    host, domain = host.lower().rstrip("."), domain.lower().rstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def without_extension(address: str, delimiters: str | None) -> str:
    """The address without its subaddress (RFC 5233): "bob+tag@x" -> "bob@x" when "+" is one
    of `delimiters` (Postfix's recipient_delimiter: the first one found splits); unchanged
    when there is none or no delimiter is configured."""
    local, at, domain = address.rpartition("@")
    if not delimiters or not at:
        return address
    cut = min((local.find(char) for char in delimiters if char in local), default=-1)
    return f"{local[:cut]}@{domain}" if cut > 0 else address


def ip_literal(host: str) -> IPAddress | None:
    """The IP address a host names directly, bare ("192.0.2.1", as mail programs accept it)
    or as an RFC 5321 address literal ("[192.0.2.1]", "[IPv6:2001:db8::1]"); else None."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if text[:5].lower() == "ipv6:":
            text = text[5:]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_ip_literal(host: str) -> bool:
    """True when `host` is an IP address, bare or in brackets (see `ip_literal`)."""
    return ip_literal(host) is not None
