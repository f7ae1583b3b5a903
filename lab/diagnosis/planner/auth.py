"""Stage 5, AUTH: can the mail program log in?

With a login configured, `authenticate` picks the mechanism as the mail program
would (the configured one, or the best offered for "auto") and asks
`Authenticate`. When no AUTH is offered over an unencrypted session that offers
STARTTLS, it asks `PeekAfterStarttls`: servers often offer AUTH only once
encrypted. Without a login, `not_configured` only notes what is offered. Sets
the `auth` facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect, polite
from lab.diagnosis.planner.facts import Findings, reply_facts
from lab.diagnosis.requests import (
    Authenticate,
    EndSession,
    Lines,
    PeekAfterStarttls,
    PeekResult,
    SessionResult,
)
from lab.smtp import sasl


def not_configured(findings: Findings, extensions: Mapping[str, str], *, encrypted: bool) -> None:
    """No login is configured: say what the server would have offered."""
    facts = _facts(findings, extensions, encrypted=encrypted)
    facts["state"] = "not-configured"
    findings.facts["auth"] = facts
    offered = facts["offered"]
    proves = (
        f"The mail program does not log in; the server offers AUTH {' '.join(offered)}."
        if offered
        else "The mail program does not log in, and the server offers no AUTH here."
    )
    findings.emit(Probe.AUTH, Status.INFO, "AUTH", "Nothing: no login is configured.", proves)


def authenticate(
    findings: Findings, extensions: Mapping[str, str], *, encrypted: bool, address: str
) -> Asking[bool]:
    """Log in as the mail program does; False when the walk cannot go on."""
    settings = findings.settings
    auth = settings.auth
    assert auth is not None
    facts = _facts(findings, extensions, encrypted=encrypted)
    findings.facts["auth"] = facts
    offered: list[str] = facts["offered"]
    mechanism: str = auth.mechanism
    title = "AUTH"
    if mechanism == "auto":
        if not offered:
            tried = "Looked for AUTH in the EHLO reply."
            transcript: Lines = ()
            duration = 0.0
            if not encrypted and (findings.facts.get("ehlo") or {}).get("starttls"):
                yield EndSession(polite=True)
                peek = expect(
                    (yield PeekAfterStarttls(address, settings.port, findings.helo)), PeekResult
                )
                after = (peek.extensions or {}).get("AUTH", "").upper().split()
                facts["offered_after_tls"] = after if peek.extensions is not None else None
                transcript, duration = peek.transcript, peek.duration
                tried += " Then, on a new connection, issued STARTTLS and EHLO again."
            else:
                yield EndSession(polite=True)
            facts["state"] = "not-offered"
            if facts["offered_after_tls"]:
                proves = (
                    "The server offers AUTH only after STARTTLS "
                    f"({' '.join(facts['offered_after_tls'])}); the mail program, set to no "
                    "encryption, never sees it and cannot log in."
                )
            else:
                proves = (
                    f"The server offers no AUTH on port {settings.port} at all: this port "
                    "is for receiving mail, not for submission by users."
                )
            return findings.fail(
                Probe.AUTH,
                "not-offered",
                "AUTH is not offered",
                title=title,
                tried=tried,
                proves=proves,
                transcript=transcript,
                duration=duration,
            )
        picked = sasl.pick_mechanism(offered)
        if picked is None:
            facts["state"] = "no-common-mechanism"
            findings.fail(
                Probe.AUTH,
                "no-common-mechanism",
                "no common AUTH mechanism",
                title=title,
                tried="Compared AUTH mechanisms.",
                proves=(
                    f"The server offers AUTH {' '.join(offered)}, none of which the mail "
                    "program speaks (PLAIN, LOGIN, CRAM-MD5)."
                ),
            )
            yield EndSession(polite=True)
            return False
        mechanism = picked
    facts["mechanism"] = mechanism
    result = expect((yield Authenticate(mechanism, auth.user, auth.password)), SessionResult)
    facts.update(reply_facts(result.reply))
    tried = f"Logged in as {auth.user} with AUTH {mechanism} (password masked)."
    if result.failure is not None:
        return findings.broke(
            Probe.AUTH,
            facts,
            result,
            title=title,
            tried=tried,
            proves=f"The session broke during AUTH ({result.failure.detail}).",
        )
    reply = result.reply
    assert reply is not None
    if reply.code == 235:
        findings.emit(
            Probe.AUTH,
            Status.OK,
            title,
            tried,
            f"The login {auth.user} is accepted ({reply}).",
            transcript=result.transcript,
            duration=result.duration,
        )
        return True
    findings.refused(
        Probe.AUTH,
        facts,
        reply,
        result,
        title=title,
        tried=tried,
        proves=f"The server refused the login: {reply}.",
    )
    yield EndSession(polite=polite(result))
    return False


def _facts(findings: Findings, extensions: Mapping[str, str], *, encrypted: bool) -> dict[str, Any]:
    """The `auth` facts: what is configured, and what is offered before and after TLS."""
    settings = findings.settings
    ehlo = findings.facts.get("ehlo") or {}
    tls = findings.facts.get("tls") or {}
    after = (tls.get("after") or {}).get("auth")
    mechanism = settings.auth.mechanism if settings.auth else None
    offered = extensions.get("AUTH", "").upper().split()
    return {
        "configured": settings.auth is not None,
        "state": "ok",
        "user": settings.auth.user if settings.auth else None,
        "mechanism": mechanism,
        "forced": mechanism not in (None, "auto"),
        "offered": offered,
        "offered_plain": ehlo.get("auth", []),
        "offered_after_tls": after,
        "mechanism_offered": (mechanism in offered) if mechanism not in (None, "auto") else None,
        "encrypted": encrypted,
        "code": None,
        "enhanced": None,
        "text": None,
        "reply": None,
    }
