"""The lab's certificates and TLS contexts: one lab CA, one key and certificate per server.

A scenario can break a server's certificate on purpose (`CertificateFault`):
expired, issued for another name, or self-signed (not from the lab CA). The
faults are real X.509 defects, so any verifying client (ours, OpenSSL,
Outlook) rejects them for the reason a support desk would see. A certificate
can also name IP addresses, for clients that connect to a bare address.

EC P-256 keys: generating RSA keys would dominate the local backend's start time.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.nodes.config import TlsFiles
from lab.private_files import write_private
from lab.scenario.model import CertificateFault

CA_FILE = "ca.pem"
WRONG_NAME = "wrong-name.invalid"
# A certificate valid for a long time but not forever: far-future dates trip some clients.
VALIDITY = datetime.timedelta(days=825)
# Backdating covers clock skew between the host and containers.
BACKDATE = datetime.timedelta(hours=1)
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?$")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def issue_certificates(
    directory: Path,
    servers: dict[str, CertificateFault],
    *,
    addresses: Mapping[str, Iterable[IpAddress | str]] | None = None,
    ca_name: str = "smtp-lab CA",
) -> tuple[Path, dict[str, TlsFiles]]:
    """Create a lab CA and a key and certificate for every server hostname.

    Args:
        directory: where the PEM files go (created if missing); `ca.pem` is the
            trust anchor clients of the lab use.
        servers: hostname -> the fault its certificate must have (or `NONE`).
        addresses: hostname -> IPv4/IPv6 addresses its certificate also names
            (IP address SANs), for clients that connect to an address and
            verify it. A `WRONG_NAME` certificate names none of them: it is
            issued for another name altogether.
        ca_name: the CA's common name (a TLS-scanning antivirus names its own CA).

    Returns:
        The CA certificate's path and, per hostname, its `TlsFiles`: the
        certificate file holds the leaf then the CA certificate (the chain a
        server sends), except for a self-signed leaf, which has no chain.

    Raises:
        ValueError: a hostname is not a DNS name (it also names the files),
            an address is not an IP address, or `addresses` names a host
            that is not in `servers`.
    """
    for hostname in servers:
        if not _HOSTNAME.match(hostname) or ".." in hostname:
            raise ValueError(f"not a host name: {hostname!r}")
    ip_sans = _ip_addresses(servers, addresses or {})
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _ca_certificate(ca_key, now, ca_name)
    ca_path = directory / CA_FILE
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    ca_path.write_bytes(ca_pem)
    issued: dict[str, TlsFiles] = {}
    for hostname, fault in servers.items():
        key = ec.generate_private_key(ec.SECP256R1())
        ips = ip_sans.get(hostname, [])
        cert = _leaf_certificate(hostname, ips, fault, key, ca_key, ca_cert, now)
        cert_path = directory / f"{hostname.lower()}.pem"
        key_path = directory / f"{hostname.lower()}.key"
        chain = cert.public_bytes(serialization.Encoding.PEM)
        if fault is not CertificateFault.SELF_SIGNED:
            chain += ca_pem
        cert_path.write_bytes(chain)
        _write_key(key_path, key)
        issued[hostname] = TlsFiles(cert_file=cert_path, key_file=key_path, fault=fault)
    return ca_path, issued


def _ip_addresses(
    servers: Mapping[str, CertificateFault], addresses: Mapping[str, Iterable[IpAddress | str]]
) -> dict[str, list[IpAddress]]:
    """`addresses` checked and parsed, before any file is written."""
    parsed: dict[str, list[IpAddress]] = {}
    for hostname, values in addresses.items():
        if hostname not in servers:
            raise ValueError(f"addresses given for {hostname!r}, which gets no certificate")
        parsed[hostname] = [ipaddress.ip_address(value) for value in values]
    return parsed


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """A server-side context presenting `files`; client certificates are not asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.cert_file, files.key_file)
    return context


def client_context(ca_file: Path | None, verify: bool) -> ssl.SSLContext:
    """A client-side context.

    Args:
        ca_file: the trust anchor (the lab CA); None trusts the system's CAs,
            which never include the lab CA: every lab certificate then fails
            as "unknown CA", as it would for a mail program on a real PC.
        verify: check the chain and the host name; False accepts anything,
            as a mail program with certificate checks switched off does.
    """
    if not verify:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


# --- certificates ------------------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "smtp-lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _ca_certificate(
    key: ec.EllipticCurvePrivateKey, now: datetime.datetime, common_name: str
) -> x509.Certificate:
    name = _name(common_name)
    public = key.public_key()
    # The extensions OpenSSL's strict mode (and Python 3.13's default context) insists on.
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _leaf_certificate(
    hostname: str,
    ips: list[IpAddress],
    fault: CertificateFault,
    key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    now: datetime.datetime,
) -> x509.Certificate:
    name = WRONG_NAME if fault is CertificateFault.WRONG_NAME else hostname
    san: list[x509.GeneralName] = [x509.DNSName(name)]
    if fault is not CertificateFault.WRONG_NAME:
        san += [x509.IPAddress(ip) for ip in ips]
    if fault is CertificateFault.EXPIRED:
        not_before, not_after = now - datetime.timedelta(days=400), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - BACKDATE, now + VALIDITY
    self_signed = fault is CertificateFault.SELF_SIGNED
    issuer_name = _name(name) if self_signed else ca_cert.subject
    signing_key = key if self_signed else ca_key
    public = key.public_key()
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer_name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority, critical=False)
        .sign(signing_key, hashes.SHA256())
    )


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a key readable by its owner only, with no window where it is world-readable."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(path, pem)
