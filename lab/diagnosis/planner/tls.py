"""Stage 4, TLS: is the session encrypted as the mail program expects, with a valid certificate?

With security "starttls", `starttls` looks for STARTTLS in the EHLO reply, asks
`StartTls` (the handshake with the mail program's verification, then EHLO
again) and hands on the extensions offered after it. With "tls" the handshake
happened on connect: `implicit_tls` records it. With "none", `not_used` says so.
A failed handshake is explained by `handshake_failed`, which asks for a second
look (`TryOtherTlsMode` when implicit TLS met plain text, then `InspectTls`,
which accepts any certificate and old versions). Sets the `tls` facts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings, reply_facts
from lab.diagnosis.planner.tls_facts import cert_facts, classify_tls_error, mode_facts
from lab.diagnosis.requests import (
    EndSession,
    Failure,
    HelloResult,
    InspectResult,
    InspectTls,
    Lines,
    ModeResult,
    OpenSession,
    ReadBanner,
    SayHello,
    SessionResult,
    StartTls,
    StartTlsResult,
    TryOtherTlsMode,
)
from lab.smtp.tls import TlsInfo


def implicit_tls(findings: Findings, opened: SessionResult) -> None:
    """The verified handshake on connect worked (security "tls")."""
    settings = findings.settings
    info = opened.tls
    facts = _base(findings, "implicit")
    facts.update(_info_facts(findings, info))
    facts["state"] = "ok"
    findings.facts["tls"] = facts
    version = info.version if info else "?"
    findings.emit(
        Probe.STARTTLS,
        Status.OK,
        "TLS handshake (implicit TLS)",
        f"Started TLS as soon as the connection was open, as port {settings.port} "
        "with security 'tls' (SMTPS) requires, verifying the certificate.",
        f"The server speaks implicit TLS ({version}) and its certificate is valid "
        f"for {settings.server}.",
        transcript=opened.transcript,
        duration=opened.duration,
    )


def not_used(findings: Findings, extensions: Mapping[str, str]) -> None:
    """Security "none": nothing to try, but say whether encryption was on offer."""
    facts = _base(findings, "none")
    facts["state"] = "not-used"
    findings.facts["tls"] = facts
    if "STARTTLS" in extensions:
        proves = (
            "The mail program is set to send unencrypted although the server offers "
            "STARTTLS: passwords and mail cross the network in clear text."
        )
        status = Status.INFO
    else:
        proves = "Not used: the mail program is set to no encryption, and none is offered."
        status = Status.INFO
    findings.emit(
        Probe.STARTTLS, status, "STARTTLS", "Nothing: encryption is switched off.", proves
    )


def starttls(
    findings: Findings, extensions: Mapping[str, str], address: str
) -> Asking[dict[str, str] | None]:
    """STARTTLS as the mail program does it; the extensions offered after it, or None."""
    if "STARTTLS" not in extensions:
        _not_offered(findings)
        yield EndSession(polite=True)
        return None
    started = expect((yield StartTls(findings.helo)), StartTlsResult)
    if not (yield from _conclude(findings, started, address)):
        if not walks_on(findings):
            return None
        return (yield from _starttls_unverified(findings, address))
    assert started.hello is not None
    return dict(started.hello.extensions)


# Certificates nobody vouches for: a finding, but the session behind them can still be judged.
_WALK_ON = frozenset({"self-signed", "unknown-ca", "untrusted"})
_UNVERIFIED_TITLE = "Go on without verifying the certificate"
_UNVERIFIED_PROVES = (
    "The certificate is not trusted (the finding above); the rest of the walk runs "
    "without verifying it, as --insecure would, so that this finding does not hide the next."
)


def walks_on(findings: Findings) -> bool:
    """After a failed handshake: is the walk to go on without verification?"""
    tls = findings.facts.get("tls") or {}
    return bool(findings.settings.verify_tls and tls.get("verify_error") in _WALK_ON)


def _starttls_unverified(findings: Findings, address: str) -> Asking[dict[str, str] | None]:
    """A new session, STARTTLS accepting any certificate; the extensions after it, or None."""
    settings = findings.settings
    yield EndSession(polite=False)
    opened = expect((yield OpenSession(address, settings.port, False, verify=False)), SessionResult)
    transcript, duration = opened.transcript, opened.duration
    started: StartTlsResult | None = None
    if opened.failure is None:
        banner = expect((yield ReadBanner()), SessionResult)
        hello = expect((yield SayHello(findings.helo)), HelloResult)
        transcript += banner.transcript + hello.transcript
        duration += banner.duration + hello.duration
        if banner.failure is None and hello.failure is None:
            started = expect((yield StartTls(findings.helo, verify=False)), StartTlsResult)
            transcript += started.transcript
            duration += started.duration
    works = (
        started is not None
        and started.failure is None
        and started.hello is not None
        and started.hello.reply is not None
        and started.hello.reply.is_positive
    )
    tried = "Connected again and issued STARTTLS accepting any certificate, then EHLO."
    if not works or started is None or started.hello is None:
        findings.emit(
            Probe.STARTTLS,
            Status.FAIL,
            _UNVERIFIED_TITLE,
            tried,
            "Even without verification the session could not be resumed; the walk ends here.",
            transcript=transcript,
            duration=duration,
        )
        yield EndSession(polite=False)
        return None
    after = dict(started.hello.extensions)
    findings.facts["tls"]["after"] = _after_facts(after)
    _went_on(findings, tried, transcript, duration)
    return after


def _after_facts(after: Mapping[str, str]) -> dict[str, Any]:
    """What the server offers once encrypted."""
    return {
        "extensions": dict(after),
        "keywords": sorted(after),
        "auth": after.get("AUTH", "").upper().split(),
    }


def implicit_unverified(findings: Findings, opened: SessionResult) -> bool:
    """Implicit TLS reopened without verification: True when it connected (a WARN step)."""
    if opened.failure is not None:
        return False
    _went_on(
        findings,
        "Connected again with implicit TLS accepting any certificate.",
        opened.transcript,
        opened.duration,
    )
    return True


def _went_on(findings: Findings, tried: str, transcript: Lines, duration: float) -> None:
    """The walk goes on unverified: a fact for the catalog, a WARN step for the reader."""
    findings.facts["tls"]["continued_unverified"] = True
    findings.emit(
        Probe.STARTTLS,
        Status.WARN,
        _UNVERIFIED_TITLE,
        tried,
        _UNVERIFIED_PROVES,
        transcript=transcript,
        duration=duration,
    )


def _not_offered(findings: Findings) -> None:
    ehlo = findings.facts.get("ehlo") or {}
    facts = _base(findings, "starttls")
    facts["state"] = "not-offered"
    findings.facts["tls"] = facts
    if ehlo.get("mangled"):
        proves = (
            "STARTTLS is missing from the EHLO reply and other keywords are masked: a "
            "firewall strips encryption from the session."
        )
    elif ehlo.get("helo_fallback"):
        proves = "The server only speaks HELO, so it cannot offer STARTTLS."
    else:
        proves = (
            "The mail program is set to STARTTLS, but the server does not offer it on this "
            "port: it has no certificate here, or this is not the submission port."
        )
    findings.fail(
        Probe.STARTTLS,
        "not-offered",
        "STARTTLS is not offered",
        title="STARTTLS",
        tried="Looked for STARTTLS in the EHLO reply.",
        proves=proves,
    )


def _conclude(findings: Findings, started: StartTlsResult, address: str) -> Asking[bool]:
    facts = _base(findings, "starttls")
    facts.update(_info_facts(findings, started.tls))
    facts.update(reply_facts(started.reply))
    findings.facts["tls"] = facts
    title = "STARTTLS and certificate"
    tried = (
        "Sent STARTTLS, negotiated TLS verifying the certificate against "
        f"{findings.settings.server}, then EHLO again."
    )
    reply = started.reply
    if started.failure is not None and started.failure.kind == "tls":
        yield from handshake_failed(findings, started.failure, started, address, implicit=False)
        return False
    if started.failure is not None:
        facts["error"] = started.failure.detail
        return findings.broke(
            Probe.STARTTLS,
            facts,
            started,
            title=title,
            tried=tried,
            proves=f"The session broke during STARTTLS ({started.failure.detail}).",
        )
    assert reply is not None
    if reply.code != 220:
        findings.refused(
            Probe.STARTTLS,
            facts,
            reply,
            started,
            title=title,
            tried=tried,
            proves=(
                f"The server offers STARTTLS but refuses to start it ({reply}): its TLS "
                "setup is broken (no usable certificate or key)."
            ),
            state="refused",
        )
        yield EndSession(polite=True)
        return False
    hello = started.hello
    if hello is None or hello.reply is None or not hello.reply.is_positive:
        facts["state"] = "ehlo-failed"
        detail = (
            hello.failure.detail
            if hello and hello.failure
            else str(hello.reply)
            if hello and hello.reply
            else "no answer"
        )
        findings.fail(
            Probe.STARTTLS,
            "reply",
            detail,
            hello.reply if hello and hello.reply else None,
            title=title,
            tried=tried,
            proves=f"TLS was established, but EHLO afterwards failed ({detail}).",
            transcript=started.transcript,
            duration=started.duration,
        )
        yield EndSession(polite=hello is not None and hello.failure is None)
        return False
    after = dict(hello.extensions)
    facts["after"] = _after_facts(after)
    cert = facts.get("cert") or {}
    proves = (
        f"TLS works ({facts['version']}, {facts['cipher']}); the certificate for "
        f"{cert.get('name') or cert.get('subject') or '?'} issued by "
        f"{cert.get('issuer') or '?'} is valid until {cert.get('not_after') or '?'} and "
        f"matches {findings.settings.server}."
    )
    findings.emit(
        Probe.STARTTLS,
        Status.OK,
        title,
        tried,
        proves,
        transcript=started.transcript,
        duration=started.duration,
    )
    return True


def handshake_failed(
    findings: Findings,
    failure: Failure,
    result: SessionResult | StartTlsResult,
    address: str,
    *,
    implicit: bool,
) -> Asking[None]:
    """A handshake failed: learn why with a second look, then explain."""
    settings = findings.settings
    facts = findings.facts.get("tls") or _base(findings, "implicit" if implicit else "starttls")
    findings.facts["tls"] = facts
    family = classify_tls_error(failure.detail)
    facts.update(
        {
            "state": "failed",
            "error": failure.detail,
            "error_class": family,
            "verify_error": family
            if family in ("hostname-mismatch", "expired", "self-signed", "unknown-ca", "untrusted")
            else None,
        }
    )
    transcript = result.transcript
    duration = result.duration
    tried = (
        "Started TLS at once (implicit TLS), verifying the certificate."
        if implicit
        else "Sent STARTTLS and negotiated TLS, verifying the certificate."
    )
    title = "TLS handshake (implicit TLS)" if implicit else "STARTTLS and certificate"
    if implicit and family in ("not-tls", "closed", "timeout", "other"):
        # Maybe the port speaks plain SMTP: the classic "SSL/TLS on 587" mistake.
        mode = expect(
            (yield TryOtherTlsMode(address, settings.port, False, findings.helo)), ModeResult
        )
        facts["mode_check"] = mode_facts(mode)
        transcript += mode.transcript
        duration += mode.duration
        tried += " Then connected again and waited for a plain-text greeting."
        if facts["mode_check"]["works"]:
            findings.fail(
                Probe.STARTTLS,
                "wrong-tls-mode",
                failure.detail,
                title=title,
                tried=tried,
                proves=(
                    f"Port {settings.port} speaks plain SMTP first (it greeted with "
                    f"{mode.banner}), so a TLS handshake from the first byte fails "
                    f"({failure.detail}). The mail program is set to SSL/TLS where this port "
                    "wants STARTTLS."
                ),
                transcript=transcript,
                duration=duration,
                extra={
                    "expected_mode": "plain text first, then STARTTLS",
                    "fix_security": facts["mode_check"]["security"],
                },
            )
            return
    inspected = expect(
        (yield InspectTls(address, settings.port, implicit, findings.helo)), InspectResult
    )
    transcript += inspected.transcript
    duration += inspected.duration
    facts["inspect"] = {
        "version": inspected.tls.version if inspected.tls else None,
        "error": inspected.failure.detail if inspected.failure else None,
    }
    if inspected.tls is not None:
        facts["cert"] = cert_facts(inspected.tls, settings.server, findings.now)
        facts["version"] = facts["version"] or inspected.tls.version
    tried += " Then looked again accepting any certificate and old TLS versions."
    cert = facts.get("cert") or {}
    verify_error = facts["verify_error"]
    if verify_error == "hostname-mismatch":
        proves = (
            f"The certificate is valid for {', '.join(cert.get('names') or []) or '?'} but "
            f"the mail program connects to {settings.server}: the names do not match."
        )
    elif verify_error == "expired":
        proves = f"The server's certificate expired on {cert.get('not_after') or '?'}."
    elif verify_error in ("self-signed", "unknown-ca", "untrusted"):
        proves = (
            f"The certificate ({cert.get('subject') or '?'}, issued by "
            f"{cert.get('issuer') or '?'}) does not chain to a trusted authority: "
            "self-signed, a private CA, or an incomplete chain."
        )
    elif inspected.tls is not None and family not in ("not-tls",):
        proves = (
            f"The handshake failed ({failure.detail}); accepting old versions it works "
            f"with {inspected.tls.version}: the server only offers outdated TLS that the "
            "mail program (rightly) refuses."
        )
    else:
        proves = f"The TLS handshake failed: {failure.detail}."
    findings.fail(
        Probe.STARTTLS,
        "tls",
        failure.detail,
        title=title,
        tried=tried,
        proves=proves,
        transcript=transcript,
        duration=duration,
    )


def _base(findings: Findings, mode: str) -> dict[str, Any]:
    """The `tls` facts before anything is known."""
    ehlo = findings.facts.get("ehlo") or {}
    return {
        "mode": mode,
        "state": "ok",
        "offered": bool(ehlo.get("starttls")),
        "code": None,
        "enhanced": None,
        "text": None,
        "reply": None,
        "error": None,
        "error_class": None,
        "verify_error": None,
        "version": None,
        "cipher": None,
        "verified": None,
        "cert": None,
        "inspect": None,
        "mode_check": None,
        "after": None,
    }


def _info_facts(findings: Findings, info: TlsInfo | None) -> dict[str, Any]:
    """What a handshake negotiated, and the certificate judged for the configured server."""
    if info is None:
        return {}
    return {
        "version": info.version,
        "cipher": info.cipher,
        "verified": info.verified,
        "cert": cert_facts(info, findings.settings.server, findings.now),
    }
