"""`SendResult`: what a mail program saw when it sent one message, as data and as JSON.

The mail program (`lab.smtp.mail_program`) produces it; the runtimes, the lab
runner and the diagnosis read it, and a client container prints it as JSON
for the docker backend to read back, so `to_json` and `from_json` round-trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lab.scenario.model import Outcome, Stage
from lab.smtp.reply import SmtpReply
from lab.smtp.tls import TlsInfo
from lab.smtp.transcript import Direction, Transcript, TranscriptLine


@dataclass(frozen=True)
class SendResult:
    """What the mail program saw: how far it got, the last reply, the whole transcript.

    `stage` is where it stopped (`DATA` on success: the hand-off; the lab runner
    may refine DELIVERED to bounced/deferred by following `message_id`).
    `rejected_recipients` maps each refused recipient to the server's reply.
    """

    outcome: Outcome
    stage: Stage | None
    code: int | None
    enhanced: str | None
    text: str
    transcript: Transcript
    timings: dict[Stage, float]
    message_id: str
    server_address: str | None
    port: int
    accepted_by: str | None = None
    server: str = ""
    accepted_recipients: list[str] = field(default_factory=list)
    rejected_recipients: dict[str, SmtpReply] = field(default_factory=dict)
    extensions: dict[str, str] = field(default_factory=dict)
    tls: TlsInfo | None = None
    authenticated: bool = False

    @property
    def delivered(self) -> bool:
        """The server took the message."""
        return self.outcome is Outcome.DELIVERED

    def to_json(self) -> dict[str, Any]:
        """Plain, JSON-serialisable data (secrets are already masked in the transcript)."""
        return {
            "outcome": str(self.outcome),
            "stage": str(self.stage) if self.stage else None,
            "code": self.code,
            "enhanced": self.enhanced,
            "text": self.text,
            "message_id": self.message_id,
            "server": self.server,
            "server_address": self.server_address,
            "port": self.port,
            "accepted_by": self.accepted_by,
            "accepted_recipients": list(self.accepted_recipients),
            "rejected_recipients": {
                address: reply.to_json() for address, reply in self.rejected_recipients.items()
            },
            "extensions": dict(self.extensions),
            "tls": self.tls.to_json() if self.tls else None,
            "authenticated": self.authenticated,
            "timings": {str(stage): round(seconds, 4) for stage, seconds in self.timings.items()},
            "transcript": self.transcript.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SendResult:
        """The reverse of `to_json` (how a backend reads a client container's output)."""
        return cls(
            outcome=Outcome(data["outcome"]),
            stage=Stage(data["stage"]) if data.get("stage") else None,
            code=data.get("code"),
            enhanced=data.get("enhanced"),
            text=str(data.get("text", "")),
            transcript=Transcript(
                [
                    TranscriptLine(float(line["at"]), Direction(line["dir"]), str(line["text"]))
                    for line in data.get("transcript", [])
                ]
            ),
            timings={Stage(stage): float(s) for stage, s in data.get("timings", {}).items()},
            message_id=str(data.get("message_id", "")),
            server_address=data.get("server_address"),
            port=int(data["port"]),
            accepted_by=data.get("accepted_by"),
            server=str(data.get("server", "")),
            accepted_recipients=[str(a) for a in data.get("accepted_recipients", [])],
            rejected_recipients={
                address: SmtpReply.from_json(reply)
                for address, reply in data.get("rejected_recipients", {}).items()
            },
            extensions={str(k): str(v) for k, v in data.get("extensions", {}).items()},
            tls=TlsInfo.from_json(data["tls"]) if data.get("tls") else None,
            authenticated=bool(data.get("authenticated", False)),
        )
