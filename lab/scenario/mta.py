"""`--mta` / `SMTPLAB_MTA`: the same scenario with every mail server run by another program."""

from __future__ import annotations

import os

from lab.errors import UsageError
from lab.scenario.mailserver import MailServerNode
from lab.scenario.model import Scenario
from lab.scenario.vocabulary import MtaSoftware

MTA_ENV = "SMTPLAB_MTA"


def chosen_mta(name: str | None) -> MtaSoftware | None:
    """`--mta NAME`, else `$SMTPLAB_MTA`, else None (each node keeps its own `software`).

    Raises:
        UsageError: not a known program.
    """
    name = name or os.environ.get(MTA_ENV) or None
    if name is None:
        return None
    try:
        return MtaSoftware(name)
    except ValueError:
        known = ", ".join(software.value for software in MtaSoftware)
        raise UsageError(f"--mta {name}: not one of {known}") from None


def with_mta(scenario: Scenario, software: MtaSoftware | None) -> Scenario:
    """`scenario` with every relay and mx run by `software` (unchanged when None)."""
    if software is None:
        return scenario
    nodes = {
        name: node.model_copy(update={"software": software})
        if isinstance(node, MailServerNode)
        else node
        for name, node in scenario.nodes.items()
    }
    return scenario.model_copy(update={"nodes": nodes})
