"""The facts of one diagnosis and the steps that show them, collected in one place.

`Findings` is the notebook of one walk. It holds what the stages judge by (the
mail program's settings, its HELO name, the time) and what they conclude: the
*facts*, one nested dict of plain values per stage (the `evidence` of each
step) plus the decisive `problem` and the `outcome`, which the fault catalog
matches; and the `Step`s emitted so far. Each stage sets its own section of
`facts`, then calls `emit` for a step or `fail` for a failure and its FAIL
step (`broke` when the session broke, `refused` when the server said no);
`finish` shows the steps never reached. The small conversions every stage
uses to turn a result into facts (`reply_facts`, `ms`, `human_size`, ...)
live here too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from lab.addresses import domain_of
from lab.diagnosis.events import Probe, Status, Step
from lab.diagnosis.requests import Failure, Lines
from lab.scenario.model import MailSettings
from lab.smtp.reply import SmtpReply

SESSION_PROBES: tuple[Probe, ...] = (
    Probe.BANNER,
    Probe.EHLO,
    Probe.STARTTLS,
    Probe.AUTH,
    Probe.MAIL,
    Probe.RCPT,
    Probe.DATA,
)
ORDER: tuple[Probe, ...] = (Probe.RESOLVE, Probe.PORTS, *SESSION_PROBES, Probe.DELIVERY)

# Facts sections named differently from their probe.
_FACT_KEYS: dict[Probe, str] = {Probe.STARTTLS: "tls"}

_TITLES: dict[Probe, str] = {
    Probe.RESOLVE: "Resolve the server name",
    Probe.PORTS: "Connect",
    Probe.BANNER: "Read the greeting",
    Probe.EHLO: "EHLO and extensions",
    Probe.STARTTLS: "STARTTLS and certificate",
    Probe.AUTH: "AUTH",
    Probe.MAIL: "MAIL FROM",
    Probe.RCPT: "RCPT TO",
    Probe.DATA: "DATA",
    Probe.DELIVERY: "Follow the message",
    Probe.RELAY: "Relay audit from outside",
    Probe.RECIPIENT: "Ask the recipient's server",
    Probe.FIX: "Re-send with the fix",
}


# --- results as facts ----------------------------------------------------------------------------


def human_size(size: int) -> str:
    """Bytes as people say them: 10240000 -> "10.2 MB" (decimal units, as SIZE is written)."""
    for unit, factor in (("GB", 1000**3), ("MB", 1000**2), ("KB", 1000)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


def size_facts(size: int | None) -> dict[str, Any]:
    """A server's SIZE limit as facts, and the size to suggest under it: half the limit,
    since attachments grow by a third when encoded and headers add more."""
    return {
        "size_text": human_size(size) if size else None,
        "size_suggestion": size // 2 if size else None,
        "size_suggestion_text": human_size(size // 2) if size else None,
    }


def ms(seconds: float) -> float:
    """Seconds as milliseconds, as the facts keep durations."""
    return round(seconds * 1000, 1)


def secs(seconds: float) -> str:
    """Seconds as the step texts write them ("3", "0.5")."""
    return f"{seconds:g}"


def reply_facts(reply: SmtpReply | None) -> dict[str, Any]:
    """An SMTP reply as facts: code, enhanced status, text and the whole reply."""
    if reply is None:
        return {"code": None, "enhanced": None, "text": None, "reply": None}
    return {
        "code": reply.code,
        "enhanced": reply.enhanced,
        "text": reply.message,
        "reply": str(reply),
    }


def settings_facts(settings: MailSettings) -> dict[str, Any]:
    """The mail program's settings as facts (never the password)."""
    auth = settings.auth
    return {
        "server": settings.server,
        "port": settings.port,
        "security": str(settings.security),
        "auth": auth is not None,
        "user": auth.user if auth else None,
        "mechanism": auth.mechanism if auth else None,
        "sender": settings.sender,
        "sender_domain": domain_of(settings.sender),
        "recipients": list(settings.to),
        "recipient_domains": list(dict.fromkeys(domain_of(a) for a in settings.to)),
        "timeout": settings.timeout,
        "size": settings.size,
        "size_text": human_size(settings.size),
        "verify_tls": settings.verify_tls,
    }


class Exchange(Protocol):
    """One exchange with the server, as the failure helpers need it."""

    @property
    def failure(self) -> Failure | None:
        """What broke the session, if something did."""
        ...

    @property
    def transcript(self) -> Lines:
        """The lines exchanged."""
        ...

    @property
    def duration(self) -> float:
        """Seconds it took."""
        ...


# --- the notebook of one walk --------------------------------------------------------------------


class Findings:
    """What one walk has found so far, and what it is judged against.

    Args:
        settings: the mail program's settings, as the customer has them.
        helo: the name the mail program greets with.
        alternatives: ports tried next to the configured one.
        can_follow: the target can tell what became of an accepted message.
        now: the time certificates are judged against.
        can_audit: the target can try to relay from outside the customer's networks.
    """

    def __init__(
        self,
        settings: MailSettings,
        *,
        helo: str,
        alternatives: Sequence[int],
        can_follow: bool,
        now: datetime,
        can_audit: bool = False,
    ) -> None:
        self.settings = settings
        self.helo = helo
        self.alternatives = tuple(alternatives)
        self.can_follow = can_follow
        self.can_audit = can_audit
        self.now = now
        self.facts: dict[str, Any] = {"settings": settings_facts(settings)}
        self._steps: list[Step] = []
        self._seen: set[Probe] = set()

    @property
    def problem(self) -> dict[str, Any] | None:
        """The decisive failure, if any."""
        problem = self.facts.get("problem")
        return problem if isinstance(problem, dict) else None

    def take_steps(self) -> list[Step]:
        """The steps emitted since the last call."""
        steps, self._steps = self._steps, []
        return steps

    def emit(
        self,
        probe: Probe,
        status: Status,
        title: str,
        tried: str,
        proves: str,
        *,
        evidence: dict[str, Any] | None = None,
        transcript: Lines = (),
        duration: float = 0.0,
    ) -> None:
        """One step; its evidence is the probe's facts section unless given."""
        self._seen.add(probe)
        if evidence is None:
            evidence = self.facts.get(_FACT_KEYS.get(probe, str(probe))) or {}
        self._steps.append(
            Step(
                probe=probe,
                status=status,
                title=title,
                tried=tried,
                # A copy: the facts keep growing after the step is out.
                evidence=copy.deepcopy(evidence),
                proves=proves,
                transcript=transcript,
                duration=round(duration, 4),
            )
        )

    def fail(
        self,
        probe: Probe,
        kind: str,
        text: str,
        reply: SmtpReply | None = None,
        *,
        title: str,
        tried: str,
        proves: str,
        transcript: Lines = (),
        duration: float = 0.0,
        code: int | None = None,
        enhanced: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record a failure and emit its FAIL step; False, so a stage can stop with `return`.

        Only the first failure of a walk becomes the `problem` (the one the
        catalog explains); every failure still gets its step.

        Args:
            probe: where it failed.
            kind: the failure's family ("timeout", "reply", "wrong-tls-mode", ...).
            text: the failure in short; the problem's text when there is no reply.
            reply: the refusal, when the server said no.
            title: the step's title.
            tried: the step's account of what was done.
            proves: the step's account of what the failure means.
            transcript: the step's transcript.
            duration: the step's duration in seconds.
            code: the problem's code when there is no reply.
            enhanced: the problem's enhanced status code when there is no reply.
            extra: more facts for the problem (a fix's settings, say).
        """
        if "problem" not in self.facts:
            facts = reply_facts(reply)
            self.facts["problem"] = {
                **(extra or {}),
                "probe": str(probe),
                "kind": kind,
                "code": facts["code"] if reply else code,
                "enhanced": facts["enhanced"] if reply else enhanced,
                "text": facts["text"] if reply else text,
                "reply": facts["reply"],
                "summary": text,
                "permanent": (reply.is_permanent if reply else None),
            }
            self.facts["outcome"] = "failed"
        self.emit(
            probe, Status.FAIL, title, tried, proves, transcript=transcript, duration=duration
        )
        return False

    def broke(
        self,
        probe: Probe,
        section: dict[str, Any],
        result: Exchange,
        *,
        title: str,
        tried: str,
        proves: str,
    ) -> bool:
        """The session broke at `probe` (timeout, hang-up): note it in `section`, then `fail`."""
        failure = result.failure
        assert failure is not None
        section["state"] = failure.kind
        return self.fail(
            probe,
            failure.kind,
            failure.detail,
            title=title,
            tried=tried,
            proves=proves,
            transcript=result.transcript,
            duration=result.duration,
        )

    def refused(
        self,
        probe: Probe,
        section: dict[str, Any],
        reply: SmtpReply,
        result: Exchange,
        *,
        title: str,
        tried: str,
        proves: str,
        state: str = "rejected",
    ) -> bool:
        """The server said no at `probe`: note it in `section`, then `fail` with its reply."""
        section["state"] = state
        return self.fail(
            probe,
            "reply",
            str(reply),
            reply,
            title=title,
            tried=tried,
            proves=proves,
            transcript=result.transcript,
            duration=result.duration,
        )

    def finish(self) -> None:
        """Steps the walk never reached are shown as skipped, in the usual order."""
        self.facts.setdefault("outcome", "failed" if "problem" in self.facts else "accepted")
        problem = self.problem
        reason = f"Not reached: the {problem['probe']} step failed." if problem else "Not reached."
        for probe in ORDER:
            if probe in self._seen:
                continue
            if probe is Probe.DELIVERY and not self.can_follow:
                continue
            self.emit(
                probe,
                Status.SKIPPED,
                _TITLES[probe],
                "Nothing: an earlier step failed.",
                reason,
                evidence={},
            )
