"""TLS on the client side: the context a mail program builds, what a handshake negotiated,
and OpenSSL's failure reasons made short.

`TlsInfo` describes the server's certificate as presented, verified or not,
because a support desk wants to see the expired or misnamed certificate the
client refused. `tls_reason` keeps OpenSSL's reason code (`WRONG_VERSION_NUMBER`,
`CERTIFICATE_VERIFY_FAILED`) first: the diagnosis catalog matches on it.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

_SSL_LIBRARY_NOISE = re.compile(r"^\[[^\]]*\]\s*|\s*\(_ssl\.c:\d+\)$")


@dataclass(frozen=True)
class TlsInfo:
    """What was negotiated, and the server's certificate as presented."""

    version: str
    cipher: str
    verified: bool
    subject: str | None = None
    issuer: str | None = None
    not_after: datetime | None = None
    names: list[str] = field(default_factory=list)

    @classmethod
    def from_ssl(cls, ssl_object: ssl.SSLObject | ssl.SSLSocket, *, verified: bool) -> TlsInfo:
        """What an established TLS connection negotiated; `verified`: was the peer checked."""
        cipher = ssl_object.cipher()
        version = ssl_object.version() or "?"
        cipher_name = cipher[0] if cipher else "?"
        # The binary form is available even when verification is off, unlike the dict form.
        der = ssl_object.getpeercert(binary_form=True)
        if not der:
            return cls(version, cipher_name, verified)
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError:
            return cls(version, cipher_name, verified)
        names: list[str] = []
        with contextlib.suppress(x509.ExtensionNotFound):
            san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = [str(name) for name in san.value.get_values_for_type(x509.DNSName)]
            names += [str(ip) for ip in san.value.get_values_for_type(x509.IPAddress)]
        return cls(
            version=version,
            cipher=cipher_name,
            verified=verified,
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            not_after=certificate.not_valid_after_utc,
            names=names,
        )

    def describe(self) -> str:
        """One line for the transcript."""
        text = f"TLS established {self.version} cipher {self.cipher}"
        if self.subject is not None:
            expiry = f"{self.not_after:%Y-%m-%d %H:%M} UTC" if self.not_after else "?"
            text += f"; certificate subject {self.subject}, issuer {self.issuer}, expires {expiry}"
        if self.names:
            text += f", names {', '.join(self.names)}"
        if not self.verified:
            text += " (certificate not verified)"
        return text

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "version": self.version,
            "cipher": self.cipher,
            "verified": self.verified,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "names": list(self.names),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TlsInfo:
        """The reverse of `to_json`."""
        not_after = data.get("not_after")
        return cls(
            version=str(data["version"]),
            cipher=str(data["cipher"]),
            verified=bool(data["verified"]),
            subject=data.get("subject"),
            issuer=data.get("issuer"),
            not_after=datetime.fromisoformat(not_after) if not_after else None,
            names=[str(name) for name in data.get("names", [])],
        )


def client_tls_context(*, verify: bool, ca_file: Path | None = None) -> ssl.SSLContext:
    """What a mail program uses: full verification against `ca_file` (or the system's
    trust store), or none at all when the user ticked "accept any certificate"."""
    if verify:
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tls_reason(error: BaseException) -> str:
    """A short reason for a TLS failure: `CERTIFICATE_VERIFY_FAILED: Hostname mismatch, …`."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"CERTIFICATE_VERIFY_FAILED: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        detail = str(error.args[1]) if len(error.args) > 1 else str(error)
        detail = _SSL_LIBRARY_NOISE.sub("", detail).strip()
        reason = getattr(error, "reason", None)
        if reason and detail and detail.upper().replace(" ", "_") != reason:
            return f"{reason}: {detail}"
        return str(reason or detail or type(error).__name__)
    return str(error) or type(error).__name__
