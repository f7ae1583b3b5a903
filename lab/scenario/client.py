"""The customer's computer in a scenario: its mail program's settings ("outgoing server"
dialog) and the corrections a fix applies to them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lab.scenario.base import NodeBase, NodeName, Port, StrictModel
from lab.scenario.vocabulary import Security
from lab.units import Duration, Size


class AuthSettings(StrictModel):
    """Credentials a mail program is configured with."""

    user: str
    password: str
    mechanism: Literal["auto", "PLAIN", "LOGIN", "CRAM-MD5"] = "auto"


class MailSettings(StrictModel):
    """The customer's mail program settings ("outgoing server" dialog)."""

    server: str
    port: Port = 25
    security: Security = Security.NONE
    auth: AuthSettings | None = None
    sender: str = Field(alias="from")
    to: list[str] = Field(min_length=1)
    subject: str = "Test message from smtp-lab"
    size: Size = 1024
    timeout: Duration = 3.0
    helo: str | None = None
    verify_tls: bool = True


class MailSettingsPatch(StrictModel):
    """A correction to the mail program's settings: only the fields that change."""

    server: str | None = None
    port: Port | None = None
    security: Security | None = None
    auth: AuthSettings | None = None
    sender: str | None = Field(default=None, alias="from")
    to: list[str] | None = None
    size: Size | None = None
    timeout: Duration | None = None
    helo: str | None = None

    def apply(self, settings: MailSettings) -> MailSettings:
        """The settings with this correction applied."""
        changes = self.model_dump(exclude_unset=True, by_alias=True)
        return MailSettings.model_validate({**settings.model_dump(by_alias=True), **changes})


class ClientNode(NodeBase):
    """The customer's computer and its mail program."""

    kind: Literal["client"]
    network: NodeName
    hostname: str = "pc.customer.lan"
    settings: MailSettings
