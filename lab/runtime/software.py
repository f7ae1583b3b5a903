"""Which backend can run which mail server software: the local backend runs the lab's own
servers only; the docker backend also runs Postfix, where Postfix can express the policy."""

from __future__ import annotations

from lab.errors import LabError
from lab.nodes.config import MailServerConfig
from lab.scenario.vocabulary import MtaSoftware
from lab.topology import Topology


class SoftwareUnsupported(LabError):
    """A mail server node asks for software this backend, or that software, cannot give."""

    exit_code = 2


def _servers(topology: Topology) -> list[tuple[str, MailServerConfig]]:
    return [
        (node.name, node.config)
        for node in topology.nodes.values()
        if isinstance(node.config, MailServerConfig)
    ]


def refuse_foreign_software(topology: Topology) -> None:
    """For the local backend: every mail server must be the lab's own.

    Raises:
        SoftwareUnsupported: a node is `software: postfix`.
    """
    for name, config in _servers(topology):
        if config.software is not MtaSoftware.LAB:
            raise SoftwareUnsupported(
                f"{topology.scenario.id}: node {name} is software: {config.software}, which "
                "only the docker backend runs (use --backend docker)"
            )
        if config.postfix:
            raise SoftwareUnsupported(
                f"{topology.scenario.id}: node {name}: 'postfix' settings need software: postfix"
            )


def refuse_unexpressible(topology: Topology) -> None:
    """For the docker backend: every Postfix node's policy must be expressible in Postfix.

    Raises:
        SoftwareUnsupported: the first node that is not, with its reasons on one line.
    """
    for name, reasons in unexpressible(topology).items():
        raise SoftwareUnsupported(
            f"{topology.scenario.id}: node {name} cannot run as Postfix: {'; '.join(reasons)}"
        )


def unexpressible(topology: Topology) -> dict[str, list[str]]:
    """Node -> why Postfix cannot play it, for the nodes that cannot be played."""
    from lab.nodes.postfix.policy import refusals

    found = {name: refusals(config) for name, config in _servers(topology)}
    return {name: reasons for name, reasons in found.items() if reasons}
