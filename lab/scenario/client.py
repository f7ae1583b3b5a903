"""The customer's computer in a scenario: its mail program's settings ("outgoing server"
dialog) and the corrections a fix applies to them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lab.scenario.base import NodeBase, NodeName, Port, StrictModel
from lab.scenario.names import Address, Helo, Host, Hostname, Line
from lab.scenario.vocabulary import Security
from lab.units import Duration, Size

# The mail program builds the message in memory: a size is a few MB in practice.
MAX_MESSAGE_SIZE = 100 * 1000**2
_SIZE_NOTE = "Message size in bytes, at most 100MB (it is built in memory)."
MAX_RECIPIENTS = 1000
MAX_TIMEOUT = 600.0  # real seconds a run may wait on one step


class AuthSettings(StrictModel):
    """Credentials a mail program is configured with."""

    user: Line
    password: Line
    mechanism: Literal["auto", "PLAIN", "LOGIN", "CRAM-MD5"] = "auto"


class MailSettings(StrictModel):
    """The customer's mail program settings ("outgoing server" dialog)."""

    server: Host
    port: Port = 25
    security: Security = Security.NONE
    auth: AuthSettings | None = None
    sender: Address = Field(alias="from")
    to: list[Address] = Field(min_length=1, max_length=MAX_RECIPIENTS)
    subject: Line = "Test message from smtp-lab"
    size: Size = Field(default=1024, le=MAX_MESSAGE_SIZE, description=_SIZE_NOTE)
    timeout: Duration = Field(default=3.0, gt=0, le=MAX_TIMEOUT)
    helo: Helo | None = None
    verify_tls: bool = True


class MailSettingsPatch(StrictModel):
    """A correction to the mail program's settings: only the fields that change."""

    server: Host | None = None
    port: Port | None = None
    security: Security | None = None
    auth: AuthSettings | None = None
    sender: Address | None = Field(default=None, alias="from")
    to: list[Address] | None = Field(default=None, min_length=1, max_length=MAX_RECIPIENTS)
    size: Size | None = Field(default=None, le=MAX_MESSAGE_SIZE, description=_SIZE_NOTE)
    timeout: Duration | None = Field(default=None, gt=0, le=MAX_TIMEOUT)
    helo: Helo | None = None

    def apply(self, settings: MailSettings) -> MailSettings:
        """The settings with this correction applied."""
        changes = self.model_dump(exclude_unset=True, by_alias=True)
        return MailSettings.model_validate({**settings.model_dump(by_alias=True), **changes})


class Colleagues(StrictModel):
    """The office's other machines: behind the same router, so the servers see them at the
    customer's public address, holding SMTP sessions open while the mail program sends."""

    sessions: int = Field(ge=1, le=200, description="Sessions they hold open, greeted and idle.")
    port: Port | None = Field(default=None, description="Their port; default the mail program's.")


class ClientNode(NodeBase):
    """The customer's computer and its mail program."""

    kind: Literal["client"]
    network: NodeName
    hostname: Hostname = "pc.customer.lan"
    settings: MailSettings
    colleagues: Colleagues | None = Field(
        default=None,
        description="Other machines of the office sharing its public address (NAT) that keep "
        "sessions open to the mail program's server while it sends.",
    )
