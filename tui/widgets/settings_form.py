"""The customer's mail program settings, as an editable form with a Send button.

It shows a `MailSettings`, lets the trainee edit it, and hands back a new,
validated `MailSettings` (or says which field is wrong). It never sends
anything itself: it posts `SendRequested` and the screen decides.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Select, Static

from lab.scenario.model import AuthSettings, MailSettings, Security

NO_AUTH = "none"
MECHANISMS = (NO_AUTH, "auto", "PLAIN", "LOGIN", "CRAM-MD5")
SECURITIES = tuple(str(security) for security in Security)
_FIELDS = ("server", "port", "security", "mechanism", "user", "password", "sender", "to")
_ADDRESS_SPLIT = re.compile(r"[,;\s]+")


class FormError(ValueError):
    """A field's value cannot be used; `field` names the input to focus."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _field_of(error: ValidationError) -> str:
    """The form field a pydantic error is about (its first location)."""
    location = [str(part) for part in error.errors()[0].get("loc", ())]
    names = {"from": "sender", "auth": "user", "mechanism": "mechanism", "password": "password"}
    for part in reversed(location):
        if part in _FIELDS:
            return part
        if part in names:
            return names[part]
    return "server"


class SettingsForm(Vertical):
    """Server, port, security, AUTH mechanism, user, password (masked), from, to; Send."""

    DEFAULT_CSS = """
    SettingsForm {
        height: auto;
    }
    SettingsForm .form-row {
        height: 1;
    }
    SettingsForm .form-row Label {
        width: 10;
        color: $text-muted;
    }
    SettingsForm .form-row Input, SettingsForm .form-row Select {
        width: 1fr;
    }
    SettingsForm .form-row.-changed Label {
        color: $warning;
        text-style: bold;
    }
    SettingsForm #form-error {
        color: $error;
        height: auto;
    }
    SettingsForm #form-buttons {
        height: 1;
        margin-top: 1;
    }
    SettingsForm #form-buttons Button {
        margin-right: 1;
    }
    """

    class SendRequested(Message):
        """The trainee asked to send with these (validated) settings."""

        def __init__(self, form: SettingsForm, settings: MailSettings) -> None:
            super().__init__()
            self.form = form
            self.settings = settings

        @property
        def control(self) -> SettingsForm:
            """The form that posted this."""
            return self.form

    def __init__(
        self,
        settings: MailSettings,
        *,
        name: str | None = None,
        id: str | None = None,  # noqa: A002 (Textual's own parameter name)
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._original = settings
        self._base = settings

    def compose(self) -> ComposeResult:
        with Horizontal(id="row-server", classes="form-row"):
            yield Label("Server")
            yield Input(id="server", compact=True, placeholder="mail.example.com")
        with Horizontal(id="row-port", classes="form-row"):
            yield Label("Port")
            yield Input(id="port", compact=True, type="integer", max_length=5)
        with Horizontal(id="row-security", classes="form-row"):
            yield Label("Security")
            yield Select(
                [(value, value) for value in SECURITIES],
                id="security",
                compact=True,
                allow_blank=False,
            )
        with Horizontal(id="row-mechanism", classes="form-row"):
            yield Label("AUTH")
            yield Select(
                [(value, value) for value in MECHANISMS],
                id="mechanism",
                compact=True,
                allow_blank=False,
            )
        with Horizontal(id="row-user", classes="form-row"):
            yield Label("User")
            yield Input(id="user", compact=True)
        with Horizontal(id="row-password", classes="form-row"):
            yield Label("Password")
            yield Input(id="password", compact=True, password=True)
        with Horizontal(id="row-sender", classes="form-row"):
            yield Label("From")
            yield Input(id="sender", compact=True)
        with Horizontal(id="row-to", classes="form-row"):
            yield Label("To")
            yield Input(id="to", compact=True, placeholder="one or more, comma-separated")
        yield Static("", id="form-error")
        with Horizontal(id="form-buttons"):
            yield Button("Send", id="send", variant="primary", compact=True)
            yield Button("Reset", id="reset", compact=True)

    def on_mount(self) -> None:
        self.load(self._base)

    # --- values ---------------------------------------------------------------------------

    def load(self, settings: MailSettings) -> None:
        """Show `settings`; fields that differ from the scenario's own are highlighted."""
        self._base = settings
        self.query_one("#server", Input).value = settings.server
        self.query_one("#port", Input).value = str(settings.port)
        self.query_one("#security", Select).value = str(settings.security)
        self.query_one("#mechanism", Select).value = (
            settings.auth.mechanism if settings.auth else NO_AUTH
        )
        self.query_one("#user", Input).value = settings.auth.user if settings.auth else ""
        self.query_one("#password", Input).value = settings.auth.password if settings.auth else ""
        self.query_one("#sender", Input).value = settings.sender
        self.query_one("#to", Input).value = ", ".join(settings.to)
        self._show_error(None)
        self._mark_changes(settings)

    def _mark_changes(self, settings: MailSettings) -> None:
        original, now = self._values(self._original), self._values(settings)
        for field in _FIELDS:
            self.query_one(f"#row-{field}").set_class(original[field] != now[field], "-changed")

    @staticmethod
    def _values(settings: MailSettings) -> dict[str, Any]:
        auth = settings.auth
        return {
            "server": settings.server,
            "port": settings.port,
            "security": str(settings.security),
            "mechanism": auth.mechanism if auth else NO_AUTH,
            "user": auth.user if auth else "",
            "password": auth.password if auth else "",
            "sender": settings.sender,
            "to": list(settings.to),
        }

    def read(self) -> MailSettings:
        """The settings the form shows now.

        Raises:
            FormError: a field is empty or malformed; `field` says which.
        """
        server = self.query_one("#server", Input).value.strip()
        if not server:
            raise FormError("server", "the server name is empty")
        port_text = self.query_one("#port", Input).value.strip()
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise FormError("port", "the port must be a number from 1 to 65535")
        mechanism = str(self.query_one("#mechanism", Select).value)
        user = self.query_one("#user", Input).value.strip()
        password = self.query_one("#password", Input).value
        auth: AuthSettings | None = None
        if mechanism != NO_AUTH:
            if not user:
                raise FormError("user", "AUTH needs a user name (or choose AUTH: none)")
            auth = AuthSettings.model_validate(
                {"user": user, "password": password, "mechanism": mechanism}
            )
        recipients = [a for a in _ADDRESS_SPLIT.split(self.query_one("#to", Input).value) if a]
        if not recipients:
            raise FormError("to", "name at least one recipient")
        data = self._base.model_dump(by_alias=True)
        data.update(
            server=server,
            port=int(port_text),
            security=str(self.query_one("#security", Select).value),
            auth=auth.model_dump() if auth else None,
            to=recipients,
        )
        data["from"] = self.query_one("#sender", Input).value.strip()
        try:
            return MailSettings.model_validate(data)
        except ValidationError as error:
            message = error.errors()[0].get("msg", "invalid value")
            raise FormError(_field_of(error), str(message)) from error

    def _show_error(self, message: str | None) -> None:
        error = self.query_one("#form-error", Static)
        error.update(message or "")
        error.display = bool(message)

    def request_send(self) -> None:
        """Validate and post `SendRequested`, or show what is wrong and focus that field."""
        try:
            settings = self.read()
        except FormError as error:
            self._show_error(str(error))
            self.query_one(f"#{error.field}").focus()
            return
        self._show_error(None)
        self._mark_changes(settings)
        self.post_message(self.SendRequested(self, settings))

    # --- events ---------------------------------------------------------------------------

    @on(Button.Pressed, "#send")
    def _send_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.request_send()

    @on(Button.Pressed, "#reset")
    def _reset_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.load(self._original)

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.request_send()
