"""TLS results as facts: which security a port speaks, certificates, handshake errors.

Shared by the stages that meet TLS: the port sweep (what each open port
offers), the greeting (a silent port that answers in TLS) and the TLS stage
itself. `classify_tls_error` groups OpenSSL's reason texts into families so
that the fault catalog never has to parse OpenSSL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lab.addresses import is_ip_literal
from lab.diagnosis.requests import ModeResult
from lab.scenario.model import Security
from lab.smtp.tls import TlsInfo


def classify_tls_error(reason: str) -> str:
    """A family for OpenSSL's reason text, so that the catalog need not parse OpenSSL.

    hostname-mismatch, expired, self-signed, unknown-ca, untrusted (other verify
    failures), not-tls (the peer spoke plain text), protocol-version,
    handshake-failure, timeout, closed, other.
    """
    text = reason.lower()
    table: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("hostname-mismatch", ("hostname mismatch", "ip address mismatch", "not valid for")),
        ("expired", ("has expired", "certificate expired", "not yet valid")),
        ("self-signed", ("self-signed", "self signed")),
        ("unknown-ca", ("unable to get local issuer", "unable to get issuer", "unknown ca")),
        ("untrusted", ("certificate_verify_failed", "certificate verify failed")),
        (
            "not-tls",
            ("wrong_version_number", "packet_length_too_long", "http_request", "record_layer"),
        ),
        (
            "protocol-version",
            ("protocol_version", "unsupported_protocol", "no_protocols_available", "version"),
        ),
        ("handshake-failure", ("handshake_failure", "no_shared_cipher", "cipher", "alert")),
        ("timeout", ("timed out",)),
        ("closed", ("connection closed", "reset", "eof", "closed")),
    )
    for family, needles in table:
        if any(needle in text for needle in needles):
            return family
    return "other"


def security_of(greeting_mode: str, starttls: bool) -> str:
    """The mail program's security setting that fits a port greeting this way."""
    if greeting_mode == "tls":
        return str(Security.TLS)
    return str(Security.STARTTLS if starttls else Security.NONE)


def mode_facts(mode: ModeResult) -> dict[str, Any]:
    """What the other TLS mode showed: does the port greet when spoken to that way?"""
    works = mode.banner is not None and mode.banner.code == 220
    security = None
    if works:
        security = str(Security.TLS) if mode.implicit else security_of("plain", mode.starttls)
    return {
        "tried": "tls" if mode.implicit else "plain",
        "works": works,
        "code": mode.banner.code if mode.banner else None,
        "starttls": mode.starttls,
        "security": security,
        "error": mode.failure.detail if mode.failure else None,
        "version": mode.tls.version if mode.tls else None,
    }


def cert_facts(info: TlsInfo | None, server: str, now: datetime) -> dict[str, Any] | None:
    """The certificate as facts: names, issuer, expiry, and whether it fits `server`."""
    if info is None or info.subject is None:
        return None
    not_after = info.not_after
    names = list(info.names)
    dns_names = [name for name in names if not name.startswith("*") and not is_ip_literal(name)]
    return {
        "subject": info.subject,
        "issuer": info.issuer,
        "names": names,
        "name": dns_names[0] if dns_names else (names[0] if names else None),
        "not_after": not_after.strftime("%Y-%m-%d %H:%M UTC") if not_after else None,
        "expired": bool(not_after and not_after < now),
        "days_left": (not_after - now).days if not_after else None,
        "self_signed": info.subject == info.issuer,
        "matches_server": _name_matches(server, names),
    }


def _name_matches(server: str, names: Sequence[str]) -> bool:
    server = server.lower().strip("[]")
    for name in names:
        name = name.lower()
        if name == server:
            return True
        if name.startswith("*.") and server.partition(".")[2] == name[2:]:
            return True
    return False
