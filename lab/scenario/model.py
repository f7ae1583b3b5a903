"""The scenario schema's root: `Scenario`, the pydantic model one scenario YAML file mirrors
(networks, nodes, expectations, lab time), and the place every schema name is imported from.
Pure data, importing neither docker nor aiosmtpd: defaults that depend on other parts of the
file (addresses, PTR records, compressed lab time) are applied later, by
`lab.topology.resolve`. The node kinds live in `network`, `dns`, `mailserver` and `client`,
the closed vocabularies in `vocabulary`, the shared building blocks in `base`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from lab.scenario.base import NAME_PATTERN, DnsblZone, NodeBase, NodeName, Port, StrictModel
from lab.scenario.client import AuthSettings, ClientNode, MailSettings, MailSettingsPatch
from lab.scenario.dns import DnsNode, DnsRecord, Zone
from lab.scenario.mailserver import (
    Connector,
    Greylist,
    Listener,
    Mailbox,
    MailServerNode,
    MxNode,
    Queue,
    RateLimit,
    RelayNode,
    Routing,
    SessionLimits,
)
from lab.scenario.names import Address, Line, Prose
from lab.scenario.network import Inspection, Network, RouterNode
from lab.scenario.vocabulary import (
    AuthMechanism,
    AuthPolicy,
    CertificateFault,
    DnsFault,
    Flavour,
    HopKind,
    Level,
    ListenerTls,
    MailboxState,
    MtaSoftware,
    Outcome,
    PortPolicy,
    Security,
    SendAsPolicy,
    Stage,
    TlsVersions,
    VrfyPolicy,
)

__all__ = [
    "NAME_PATTERN",
    "AuthMechanism",
    "AuthPolicy",
    "AuthSettings",
    "CertificateFault",
    "ClientNode",
    "Connector",
    "DnsFault",
    "DnsNode",
    "DnsRecord",
    "DnsblZone",
    "Expect",
    "Flavour",
    "Greylist",
    "HopKind",
    "Inspection",
    "LabTime",
    "Level",
    "Listener",
    "ListenerTls",
    "MailServerNode",
    "MailSettings",
    "MailSettingsPatch",
    "Mailbox",
    "MailboxState",
    "MtaSoftware",
    "MxNode",
    "Network",
    "Node",
    "NodeBase",
    "NodeName",
    "Outcome",
    "Port",
    "PortPolicy",
    "Queue",
    "RateLimit",
    "RelayNode",
    "RouterNode",
    "Routing",
    "Scenario",
    "Security",
    "SendAsPolicy",
    "SessionLimits",
    "Stage",
    "StrictModel",
    "TlsVersions",
    "VrfyPolicy",
    "Zone",
]

# --- the file's top level -----------------------------------------------------------------

# A node of any kind, told apart by its `kind:` key.
Node = Annotated[
    RouterNode | DnsNode | RelayNode | MxNode | ClientNode, Field(discriminator="kind")
]


class Expect(StrictModel):
    """What the mail program must see, and the fix that must make it deliver."""

    outcome: Outcome
    stage: Stage | None = None
    code: int | None = Field(default=None, ge=200, le=599)
    enhanced: str | None = Field(default=None, pattern=r"^[245]\.\d{1,3}\.\d{1,3}$")
    delivered_to: list[Address] = Field(default=[], description="Mailboxes that must hold it.")
    diagnosis: str | None = Field(default=None, description="The expected catalog entry id.")
    hop: HopKind | None = Field(
        default=None, description="The leg of the route the diagnosis must name as failing."
    )
    fix: MailSettingsPatch | None = None
    repair: dict[NodeName, dict[str, Any]] = Field(
        default={},
        description=(
            "What the one who must act changes on the servers, by node: fields merged into"
            " the node (nested keys merge, lists are replaced). For faults no mail-program"
            " setting fixes; a fresh lab with the repair must deliver."
        ),
    )


class LabTime(StrictModel):
    """How world time is compressed in the lab: queue retries, lifetimes, greylisting."""

    speedup: float = Field(
        default=3600.0,
        gt=0,
        le=1e6,
        allow_inf_nan=False,
        description="World seconds per lab second.",
    )


# Far above any real case; the local backend's address pool holds 256 networks.
MAX_NETWORKS = 32
MAX_NODES = 64


class Scenario(StrictModel):
    """A broken (or working) mail world, with the case a trainee has to solve."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)
    title: Line
    level: Level = Level.BEGINNER
    tags: list[Line] = []
    ticket: Prose = Field(description="The customer's support ticket, as they wrote it.")
    lab_time: LabTime = LabTime()
    networks: dict[NodeName, Network] = Field(min_length=1, max_length=MAX_NETWORKS)
    nodes: dict[NodeName, Node] = Field(min_length=1, max_length=MAX_NODES)
    expect: Expect

    @property
    def client(self) -> tuple[str, ClientNode]:
        """The customer's computer (validated to exist exactly once)."""
        for name, node in self.nodes.items():
            if isinstance(node, ClientNode):
                return name, node
        raise LookupError("scenario has no client node")
