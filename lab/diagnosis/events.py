"""What the diagnosis engine emits: one `Step` per probe, then one `Diagnosis`.

The CLI, the TUI and the tests all consume these same frozen objects; the
TUI wraps them in Textual messages. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from lab.scenario.vocabulary import HopKind
from lab.smtp.transcript import TranscriptLine


class Probe(StrEnum):
    """The steps an expert walks, in order; DELIVERY follows the message after hand-off."""

    RESOLVE = "resolve"  # the configured server name in DNS
    PORTS = "ports"  # the configured port and the alternatives 25, 465, 587, 2525, in parallel
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"  # incl. the certificate
    AUTH = "auth"
    MAIL = "mail"
    RCPT = "rcpt"
    DATA = "data"
    DELIVERY = "delivery"  # queue, onward attempts, bounce (lab targets only)
    RELAY = "relay"  # the open-relay audit: a host outside tries to relay (lab targets only)
    # VRFY and RCPT at the server that refused a recipient, from outside (lab targets only)
    RECIPIENT = "recipient"
    FIX = "fix"  # the re-send with the remedy applied


class Status(StrEnum):
    """How a step went."""

    OK = "ok"
    WARN = "warn"  # works, but something is off (e.g. greylisted, then delivered)
    FAIL = "fail"
    SKIPPED = "skipped"  # not reached, because an earlier step failed
    INFO = "info"


@dataclass(frozen=True)
class Step:
    """One probe: what was tried, what came back, and what it proves."""

    probe: Probe
    status: Status
    title: str  # "Connect to mail.example.com:25"
    tried: str  # what was done, in plain words
    evidence: dict[str, Any]  # facts observed, machine-readable (these feed the catalog)
    proves: str  # what this result means, for a support agent
    transcript: tuple[TranscriptLine, ...] = ()
    duration: float = 0.0
    node: str | None = None  # the topology node this step points at, when known


@dataclass(frozen=True)
class Remedy:
    """What to change: words for people, and concrete settings when the client can fix it."""

    text: str
    settings: dict[str, Any] = field(default_factory=dict)  # a MailSettingsPatch as data
    acts: str | None = None  # who must act, when no mail-program setting fixes it


@dataclass(frozen=True)
class FailingHop:
    """The leg of the mail's route that failed: its kind and where it leads."""

    kind: HopKind
    where: str  # "relay.isp.net[10.0.0.5]:25"; for the path, the router
    node: str | None = None  # the lab node that tried (delivery) or is at fault (path)
    pattern: str | None = None  # a connector's address space ("*.net")


@dataclass(frozen=True)
class Diagnosis:
    """The verdict: the catalog entry the evidence matched, and whether the fix was proven."""

    entry: str  # catalog id, e.g. "port-blocked-timeout"
    title: str
    cause: str  # the root cause, with this case's specifics filled in
    explanation: str  # what a support agent can read to the customer
    confirm: str  # how to confirm it by hand
    remedy: Remedy
    references: tuple[str, ...] = ()
    failed_probe: Probe | None = None
    node: str | None = None  # where things went wrong
    hop: FailingHop | None = None  # which leg of the route failed
    fix_verified: bool | None = None  # None: no re-send was possible
    fix_outcome: str | None = None  # the re-send's outcome, or why none could prove the fix
    alternatives: tuple[str, ...] = ()  # other entries that also matched, less specific
    severity: Status = Status.FAIL  # ok (healthy), info/warn (delivered, with a remark), fail
    outcome: str = ""  # delivered, accepted (handed over, not followable), bounced, failed …
    duration: float = 0.0  # seconds, the fix's re-send included


def describe_settings(changes: dict[str, Any]) -> str:
    """A settings correction in words ("port 587, security starttls, login …"), no password."""
    parts: list[str] = []
    for key, value in changes.items():
        if key == "auth" and isinstance(value, dict):
            shown = f"login {value.get('user')}"
            if value.get("mechanism"):
                shown += f" ({value['mechanism']})"
            parts.append(shown)
        elif isinstance(value, list):
            parts.append(f"{key} {', '.join(str(item) for item in value)}")
        else:
            parts.append(f"{key} {value}")
    return ", ".join(parts)


def describe_hop(hop: FailingHop) -> str:
    """The hop in words: `smart host relay.isp.net[10.0.0.5]:25`, `connector *.net to …`."""
    if hop.kind is HopKind.CONNECTOR and hop.pattern:
        return f"connector {hop.pattern} to {hop.where}"
    return f"{hop.kind} {hop.where}"


def to_json(value: Step | Diagnosis) -> dict[str, Any]:
    """Plain data for `--json` output; passwords (in remedy settings) are masked."""
    from dataclasses import asdict

    data: dict[str, Any] = _masked(asdict(value))
    if isinstance(value, Step):
        data["transcript"] = [
            {"at": round(line.at, 4), "dir": str(line.direction), "text": line.text}
            for line in value.transcript
        ]
    return data


def _masked(value: Any) -> Any:
    # A remedy that turns authentication on carries the password (the engine re-sends
    # with it); output meant for people and tickets never does.
    if isinstance(value, dict):
        return {k: "****" if k == "password" else _masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
