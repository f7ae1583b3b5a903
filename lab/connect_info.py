"""What a real mail client needs to talk to a running lab: per endpoint the server's host
name (for SNI and the certificate check), its TLS mode and a ready-to-paste `swaks` line;
for the lab the CA file that signed its certificates and its DNS server's address.

Pure: built from the lab's topology, its published endpoints and its CA file path.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.scenario.model import AuthPolicy, ListenerTls, MailServerNode

if TYPE_CHECKING:
    from lab.runtime.base import Endpoint
    from lab.topology.plan import Topology


@dataclass(frozen=True)
class ServerAccess:
    """One published SMTP endpoint, as a client configures it."""

    node: str
    hostname: str  # what the certificate names: SNI and verification use it
    connect: str  # host:port on this machine
    tls: str  # "none", "starttls" or "implicit"
    auth_required: bool
    note: str
    swaks: str


@dataclass(frozen=True)
class LabAccess:
    """Everything `smtplab up` tells a user about a running lab."""

    lab: str
    backend: str
    ca_file: str | None
    dns: str | None  # the lab DNS server, address:53 inside the lab
    servers: tuple[ServerAccess, ...]

    def to_json(self) -> dict[str, Any]:
        """For `smtplab up --json`."""
        data = asdict(self)
        data["servers"] = [asdict(server) for server in self.servers]
        return data


def _swaks(
    endpoint: Endpoint, hostname: str, tls: ListenerTls, ca_file: Path | None, sender: str, to: str
) -> str:
    words = ["swaks", "--server", endpoint.host, "--port", str(endpoint.port)]
    words += ["--from", sender, "--to", to, "--helo", "client.example"]
    if tls is not ListenerTls.NONE:
        words.append("--tls-on-connect" if tls is ListenerTls.IMPLICIT else "--tls")
        words += ["--tls-sni", hostname]
        if ca_file is not None:
            words += ["--tls-verify", "--tls-ca-path", str(ca_file)]
    return shlex.join(words)


def lab_access(
    lab_id: str,
    backend: str,
    topology: Topology,
    endpoints: list[Endpoint],
    ca_file: Path | None,
) -> LabAccess:
    """The connection facts of a lab whose `endpoints` have been published."""
    scenario = topology.scenario
    settings = scenario.client[1].settings
    sender, to = settings.sender, settings.to[0] if settings.to else "postmaster@example.net"
    servers = []
    for endpoint in endpoints:
        spec = scenario.nodes.get(endpoint.node)
        if not isinstance(spec, MailServerNode):
            continue
        listener = next((item for item in spec.listeners if item.port == endpoint.lab_port), None)
        tls = listener.tls if listener is not None else ListenerTls.NONE
        servers.append(
            ServerAccess(
                node=endpoint.node,
                hostname=spec.hostname,
                connect=f"{endpoint.host}:{endpoint.port}",
                tls=str(tls),
                auth_required=listener is not None and listener.auth is AuthPolicy.REQUIRED,
                note=endpoint.note,
                swaks=_swaks(endpoint, spec.hostname, tls, ca_file, sender, to),
            )
        )
    dns = topology.dns
    dns_address = next(iter(dns.addresses.values()), None) if dns is not None else None
    return LabAccess(
        lab=lab_id,
        backend=backend,
        ca_file=str(ca_file) if ca_file is not None else None,
        dns=f"{dns_address}:53" if dns_address is not None else None,
        servers=tuple(servers),
    )


__all__ = ["LabAccess", "ServerAccess", "lab_access"]
