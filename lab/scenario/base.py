"""The building blocks every scenario model shares: the strict base model (an unknown key is
an error), the base of every node kind, and the constrained field types (node and network
names, TCP ports, DNSBL zone names)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from lab.scenario.names import Prose

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
NodeName = Annotated[str, Field(pattern=NAME_PATTERN)]
Port = Annotated[int, Field(ge=1, le=65535)]

# A zone such as "zen.spamhaus.example": at least two labels.
DnsblZone = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?$", min_length=3, max_length=200)
]


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class NodeBase(StrictModel):
    """Fields every node kind shares."""

    description: Prose = ""
