"""A small world for diagnosing real servers on 127.0.0.1: DNS, certificates, fake SMTP peers.

`world` gives each test a lab DNS (lab.nodes.dns) for example.org, certificates
from one lab CA (good, expired, wrong name, self-signed), scriptable SMTP
servers (`fakesmtp`), and a `ServerTarget` whose connector maps the logical
ports 25/465/587/2525 onto real ones, so that "587 answers while 25 is
blocked" can be staged without binding privileged ports: unmapped ports go to
a closed port (refused) or to a blackhole (the SYN is dropped).
"""

from __future__ import annotations

import ssl
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.diagnosis.engine import run_diagnosis
from lab.diagnosis.events import Diagnosis, Step
from lab.diagnosis.planner import ALTERNATIVE_PORTS
from lab.diagnosis.target import PortMapConnector, ServerTarget, nameserver_resolver
from lab.nodes import dns
from lab.nodes.config import DnsConfig, DnsRecordConfig
from lab.nodes.tls import issue_certificates, server_context
from lab.runtime.emulated import Blackhole, ClosedPort
from lab.scenario.model import CertificateFault, MailSettings
from tests.diagnosis.fakesmtp import Behaviour, FakeSmtpServers

LOCALHOST = "127.0.0.1"
CERTIFICATES = {
    "mail.example.org": CertificateFault.NONE,
    "expired.example.org": CertificateFault.EXPIRED,
    "wrong.example.org": CertificateFault.WRONG_NAME,
    "self.example.org": CertificateFault.SELF_SIGNED,
}


def _record(name: str, rdtype: str, value: str) -> DnsRecordConfig:
    return DnsRecordConfig.model_validate({"name": name, "type": rdtype, "value": value})


RECORDS = [
    _record("example.org.", "MX", "10 mail.example.org."),
    *(_record(f"{name}.", "A", LOCALHOST) for name in CERTIFICATES),
    _record("wrong-name.invalid.", "A", LOCALHOST),  # the name the wrong-name certificate has
    _record("nomx.example.org.", "A", LOCALHOST),
    _record("nullmx.example.org.", "MX", "0 ."),
    _record("nohost.example.org.", "TXT", "v=spf1 -all"),
    _record("liar.example.org.", "A", "127.0.0.7"),
    _record("1.0.0.127.in-addr.arpa.", "PTR", "mail.example.org."),
    _record("8.0.0.127.in-addr.arpa.", "PTR", "liar.example.org."),
]
ZONES = ["example.org.", "invalid.", "0.0.127.in-addr.arpa."]
FAULTS = {"servfail.example.org.": "servfail", "silent.example.org.": "timeout"}
DNS_TIMEOUT = 0.5


@dataclass(frozen=True)
class Pki:
    """The test CA and each server's certificate files."""

    ca_file: Path
    files: dict[str, Any]

    def context(
        self, name: str = "mail.example.org", *, old_tls_only: bool = False
    ) -> ssl.SSLContext:
        """A server context presenting `name`'s certificate (optionally TLS 1.0 only)."""
        context = server_context(self.files[name])
        if old_tls_only:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Issued once: key generation is the slow part."""
    ca_file, files = issue_certificates(tmp_path_factory.mktemp("diagnosis-tls"), CERTIFICATES)
    return Pki(ca_file, files)


def settings(**changes: Any) -> MailSettings:
    """A mail program submitting on 587 with STARTTLS and a login, short timeouts."""
    data: dict[str, Any] = {
        "server": "mail.example.org",
        "port": 587,
        "security": "starttls",
        "auth": {"user": "alice@example.org", "password": "s3cret-Pa55"},
        "from": "alice@example.org",
        "to": ["bob@example.org"],
        "timeout": 1.0,
        "size": 2000,
    }
    data.update(changes)
    return MailSettings.model_validate({k: v for k, v in data.items() if v is not None})


@dataclass
class World:
    """What one test runs against; see the module docstring."""

    pki: Pki
    dns_port: int
    servers: FakeSmtpServers
    closed: ClosedPort = field(default_factory=ClosedPort)
    blackhole: Blackhole = field(default_factory=Blackhole)

    async def serve(self, behaviour: Behaviour) -> int:
        """Start a fake SMTP server; its real port."""
        return await self.servers.start(behaviour)

    def target(self, ports: dict[int, int], *, unmapped: str = "closed") -> ServerTarget:
        """A ServerTarget where logical ports go to `ports`, the others to closed/blackhole."""
        fallback = self.blackhole.port if unmapped == "blackhole" else self.closed.port
        mapping = dict.fromkeys(ALTERNATIVE_PORTS, fallback)
        mapping.update(ports)
        return ServerTarget(
            resolver=nameserver_resolver(LOCALHOST, self.dns_port, timeout=DNS_TIMEOUT),
            connector=PortMapConnector(mapping),
            ca_file=self.pki.ca_file,
            helo="client.example.org",
            label="fake server",
        )

    async def diagnose(
        self,
        mail: MailSettings,
        ports: dict[int, int],
        *,
        unmapped: str = "closed",
        verify_fix: bool = True,
    ) -> tuple[list[Step], Diagnosis]:
        """Run the engine against the fake servers."""
        return await run_diagnosis(
            self.target(ports, unmapped=unmapped), mail, verify_fix=verify_fix
        )

    def close(self) -> None:
        """Release the fault sockets."""
        self.closed.close()
        self.blackhole.close()


@pytest.fixture
async def dns_port(tmp_path: Path) -> AsyncIterator[int]:
    """A lab DNS server for example.org on 127.0.0.1 (UDP and TCP)."""
    config = DnsConfig(
        name="dns",
        data_dir=tmp_path / "dns",
        listen_host=LOCALHOST,
        port=0,
        zones=ZONES,
        records=RECORDS,
        faults=FAULTS,
    )
    running = await dns.start(config)
    try:
        yield running.port
    finally:
        await running.stop()


@pytest.fixture
async def world(pki: Pki, dns_port: int) -> AsyncIterator[World]:
    """DNS, certificates and fake servers for one test; everything closed afterwards."""
    servers = FakeSmtpServers()
    made = World(pki, dns_port, servers)
    try:
        yield made
    finally:
        await servers.close()
        made.close()
