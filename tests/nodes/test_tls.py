"""Lab certificates: a working chain for healthy servers, and each fault as a real X.509 defect."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from lab.nodes.config import TlsFiles
from lab.nodes.tls import WRONG_NAME, client_context, issue_certificates, server_context
from lab.scenario.model import CertificateFault
from tests.nodes.conftest import HOSTNAME, LabCertificates

# OpenSSL's X509_V_ERR_* codes, as `SSLCertVerificationError.verify_code` reports them.
CERT_HAS_EXPIRED = 10
DEPTH_ZERO_SELF_SIGNED_CERT = 18
SELF_SIGNED_CERT_IN_CHAIN = 19  # the server sends the lab's root with its chain
HOSTNAME_MISMATCH = 62
IP_ADDRESS_MISMATCH = 64
LOOPBACK = "127.0.0.1"


def _chain(files: TlsFiles) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(files.cert_file.read_bytes())


def _san(cert: x509.Certificate) -> list[str]:
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return extension.value.get_values_for_type(x509.DNSName)


def _ip_san(cert: x509.Certificate) -> list[str]:
    extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return [str(ip) for ip in extension.value.get_values_for_type(x509.IPAddress)]


async def _handshake(files: TlsFiles, context: ssl.SSLContext, name: str = HOSTNAME) -> None:
    """A TLS handshake against a real listener presenting `files`."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_context(files))
    port = server.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname=name
        )
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


class TestIssue:
    def test_files_and_chain(self, lab_certificates: LabCertificates) -> None:
        files = lab_certificates.files[HOSTNAME]
        leaf, ca = _chain(files)
        (ca_file_cert,) = x509.load_pem_x509_certificates(lab_certificates.ca_file.read_bytes())
        assert ca == ca_file_cert
        assert leaf.issuer == ca.subject
        assert _san(leaf) == [HOSTNAME]
        assert files.key_file.stat().st_mode & 0o077 == 0
        assert files.fault is CertificateFault.NONE

    def test_expired(self, lab_certificates: LabCertificates) -> None:
        leaf = _chain(lab_certificates.files["expired.example.com"])[0]
        assert leaf.not_valid_after_utc < datetime.datetime.now(datetime.UTC)

    def test_wrong_name(self, lab_certificates: LabCertificates) -> None:
        leaf = _chain(lab_certificates.files["misnamed.example.com"])[0]
        assert _san(leaf) == [WRONG_NAME]

    def test_self_signed_has_no_chain(self, lab_certificates: LabCertificates) -> None:
        (leaf,) = _chain(lab_certificates.files["selfsigned.example.com"])
        assert leaf.issuer == leaf.subject

    @pytest.mark.parametrize("hostname", ["../evil", "a/b", "", "x..y"])
    def test_rejects_names_that_are_not_hosts(self, tmp_path: Path, hostname: str) -> None:
        with pytest.raises(ValueError, match="host name"):
            issue_certificates(tmp_path, {hostname: CertificateFault.NONE})


class TestHandshake:
    async def test_verifying_client_trusting_the_lab_ca(
        self, lab_certificates: LabCertificates
    ) -> None:
        context = client_context(lab_certificates.ca_file, verify=True)
        await _handshake(lab_certificates.files[HOSTNAME], context)

    async def test_system_trust_does_not_know_the_lab_ca(
        self, lab_certificates: LabCertificates
    ) -> None:
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await _handshake(lab_certificates.files[HOSTNAME], client_context(None, verify=True))
        assert caught.value.verify_code == SELF_SIGNED_CERT_IN_CHAIN

    @pytest.mark.parametrize(
        ("hostname", "code"),
        [
            ("expired.example.com", CERT_HAS_EXPIRED),
            ("misnamed.example.com", HOSTNAME_MISMATCH),
            ("selfsigned.example.com", DEPTH_ZERO_SELF_SIGNED_CERT),
        ],
        ids=["expired", "wrong-name", "self-signed"],
    )
    async def test_faults_fail_verification(
        self, lab_certificates: LabCertificates, hostname: str, code: int
    ) -> None:
        context = client_context(lab_certificates.ca_file, verify=True)
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await _handshake(lab_certificates.files[hostname], context, name=hostname)
        assert caught.value.verify_code == code

    async def test_non_verifying_client_accepts_a_fault(
        self, lab_certificates: LabCertificates
    ) -> None:
        context = client_context(lab_certificates.ca_file, verify=False)
        await _handshake(lab_certificates.files["expired.example.com"], context)


class TestIpAddresses:
    """Certificates naming IP addresses, for clients that connect to a bare address."""

    def test_addresses_become_ip_sans(self, tmp_path: Path) -> None:
        loopback6 = ipaddress.ip_address("::1")
        _, files = issue_certificates(
            tmp_path,
            {HOSTNAME: CertificateFault.NONE, "other.example.com": CertificateFault.NONE},
            addresses={HOSTNAME: [LOOPBACK, loopback6]},
        )
        leaf = _chain(files[HOSTNAME])[0]
        assert _san(leaf) == [HOSTNAME]
        assert _ip_san(leaf) == [LOOPBACK, "::1"]
        assert _ip_san(_chain(files["other.example.com"])[0]) == []

    def test_wrong_name_names_no_address(self, tmp_path: Path) -> None:
        _, files = issue_certificates(
            tmp_path,
            {HOSTNAME: CertificateFault.WRONG_NAME},
            addresses={HOSTNAME: [LOOPBACK]},
        )
        leaf = _chain(files[HOSTNAME])[0]
        assert (_san(leaf), _ip_san(leaf)) == ([WRONG_NAME], [])

    @pytest.mark.parametrize(
        ("addresses", "match"),
        [
            ({HOSTNAME: ["mx.example.com"]}, "does not appear to be an IPv4 or IPv6 address"),
            ({HOSTNAME: ["127.0.0.256"]}, "does not appear to be an IPv4 or IPv6 address"),
            ({"unknown.example.com": [LOOPBACK]}, "gets no certificate"),
        ],
        ids=["a-name", "not-an-address", "unknown-host"],
    )
    def test_rejects_bad_addresses_before_writing(
        self, tmp_path: Path, addresses: dict[str, list[str]], match: str
    ) -> None:
        directory = tmp_path / "tls"
        with pytest.raises(ValueError, match=match):
            issue_certificates(directory, {HOSTNAME: CertificateFault.NONE}, addresses=addresses)
        assert not directory.exists()

    async def test_verifies_for_its_address_with_hostname_checks(self, tmp_path: Path) -> None:
        ca_file, files = issue_certificates(
            tmp_path, {HOSTNAME: CertificateFault.NONE}, addresses={HOSTNAME: [LOOPBACK]}
        )
        context = ssl.create_default_context(cafile=str(ca_file))
        assert context.check_hostname
        assert context.verify_mode is ssl.CERT_REQUIRED
        await _handshake(files[HOSTNAME], context, name=LOOPBACK)

    async def test_without_the_address_the_check_fails(
        self, lab_certificates: LabCertificates
    ) -> None:
        context = client_context(lab_certificates.ca_file, verify=True)
        with pytest.raises(ssl.SSLCertVerificationError) as caught:
            await _handshake(lab_certificates.files[HOSTNAME], context, name=LOOPBACK)
        assert caught.value.verify_code == IP_ADDRESS_MISMATCH
