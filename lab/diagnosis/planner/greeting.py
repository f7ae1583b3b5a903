"""Stage 3, the greeting and EHLO: does an SMTP server answer, and what does it offer?

`read_banner` asks `ReadBanner` on the main session and concludes whether an SMTP
server greets, how fast, and whether a firewall masks the session; when the
port stays silent over plain TCP it asks `TryOtherTlsMode`, because a port that
answers in TLS expects implicit TLS. `say_hello` asks `SayHello` (EHLO, HELO when
EHLO is refused) and reads the extensions. Sets the `banner` and `ehlo` facts;
`reconnect_failed` covers a main session that could not even connect.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import (
    Findings,
    ms,
    reply_facts,
    secs,
    size_facts,
)
from lab.diagnosis.planner.tls_facts import mode_facts
from lab.diagnosis.requests import (
    EndSession,
    HelloResult,
    ModeResult,
    ReadBanner,
    SayHello,
    SessionResult,
    TryOtherTlsMode,
)
from lab.scenario.model import Security
from lab.smtp.reply import SmtpReply

# A greeting later than this (or than half the timeout) is slow: greet-pause, tarpit, load.
SLOW_BANNER_MS = 1000.0
# A masked EHLO keyword: Cisco's "fixup smtp" turns STARTTLS into XXXXXXXA, others into ****.
MANGLED_KEYWORD = re.compile(r"^(?:X{4,}A?|\*{3,}.*|.*\*{3,})$", re.IGNORECASE)
MANGLED_TEXT = re.compile(r"\*{4,}")
_HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def reconnect_failed(findings: Findings, opened: SessionResult) -> None:
    """The main session could not connect although the port sweep got through."""
    failure = opened.failure
    assert failure is not None
    findings.facts["banner"] = {"state": failure.kind, "error": failure.detail}
    findings.fail(
        Probe.BANNER,
        failure.kind,
        failure.detail,
        title="Read the greeting",
        tried=f"Connected again to port {findings.settings.port} for the conversation.",
        proves=(
            f"The second connection failed ({failure.detail}) although the port scan got "
            "through: the server is unstable or limits connections."
        ),
        transcript=opened.transcript,
        duration=opened.duration,
    )


def read_banner(
    findings: Findings, opened: SessionResult, address: str, *, implicit: bool
) -> Asking[bool]:
    """Read the greeting; False when there is none to go on with (the session is ended)."""
    settings = findings.settings
    banner = expect((yield ReadBanner()), SessionResult)
    if not implicit:
        # The connection's own notes ("connected to … in 3 ms") belong with the greeting.
        banner = replace(banner, transcript=opened.transcript + banner.transcript)
    reply = banner.reply
    took = ms(banner.duration)
    ptr = findings.facts.get("resolve", {}).get("ptr")
    host = _banner_host(reply)
    facts: dict[str, Any] = {
        "state": "ok",
        **reply_facts(reply),
        "ms": took,
        "hostname": host,
        "mangled": bool(reply and MANGLED_TEXT.search(reply.text)),
        "slow": took >= min(SLOW_BANNER_MS, settings.timeout * 500),
        "ptr": ptr,
        "ptr_matches": (host == ptr.lower()) if (host and ptr) else None,
        "mode_check": None,
    }
    findings.facts["banner"] = facts
    title = "Read the greeting"
    tried = f"Waited up to {secs(settings.timeout)} s for the server's 220 greeting."
    failure = banner.failure
    if failure is not None:
        facts["state"] = failure.kind
        facts["error"] = failure.detail
        if failure.kind == "timeout" and settings.security is not Security.TLS:
            yield EndSession(polite=False)
            mode = expect(
                (yield TryOtherTlsMode(address, settings.port, True, findings.helo)), ModeResult
            )
            facts["mode_check"] = mode_facts(mode)
            if mode.banner is not None and mode.banner.code == 220:
                return findings.fail(
                    Probe.BANNER,
                    "wrong-tls-mode",
                    failure.detail,
                    title=title,
                    tried=tried + " Then tried implicit TLS on a new connection.",
                    proves=(
                        f"The server said nothing for {secs(settings.timeout)} s over plain TCP, "
                        f"but answered at once when spoken to in TLS: port {settings.port} "
                        "expects implicit TLS (SMTPS) from the first byte, and the mail program "
                        "is waiting for a plain-text greeting that never comes."
                    ),
                    transcript=banner.transcript + mode.transcript,
                    duration=banner.duration + mode.duration,
                    extra={
                        "expected_mode": "implicit TLS from the first byte",
                        "fix_security": str(Security.TLS),
                    },
                )
            tried += " Then tried implicit TLS on a new connection, in vain."
            transcript = banner.transcript + mode.transcript
            duration = banner.duration + mode.duration
        else:
            yield EndSession(polite=False)
            transcript, duration = banner.transcript, banner.duration
        proves = {
            "timeout": (
                f"TCP connected but no greeting came within {secs(settings.timeout)} s: "
                "the server is overloaded, deliberately slow (greet-pause, tarpit), or "
                "something in the path holds the session."
            ),
            "closed": (
                "The server closed the connection before greeting: it refuses this client "
                "(access rules, too many connections) or is shutting down."
            ),
            "malformed": (
                f"Something answers on port {settings.port}, but not an SMTP server "
                f"({failure.detail})."
            ),
        }.get(failure.kind, f"The greeting could not be read: {failure.detail}.")
        return findings.fail(
            Probe.BANNER,
            failure.kind,
            failure.detail,
            title=title,
            tried=tried,
            proves=proves,
            transcript=transcript,
            duration=duration,
        )
    assert reply is not None
    if not reply.is_positive:
        facts["state"] = "rejected"
        meaning = "for now (4xx)" if reply.is_transient else "(5xx)"
        findings.fail(
            Probe.BANNER,
            "reply",
            str(reply),
            reply,
            title=title,
            tried=tried,
            proves=f"The server refuses to talk to this client {meaning}: {reply}.",
            transcript=banner.transcript,
            duration=banner.duration,
        )
        yield EndSession(polite=reply.code != 421)
        return False
    notes: list[str] = []
    status = Status.OK
    if facts["mangled"]:
        status = Status.WARN
        notes.append(
            "The greeting is masked with asterisks: a firewall with SMTP inspection sits in "
            "the path and rewrites the session."
        )
    if facts["slow"]:
        status = Status.WARN
        notes.append(
            f"The greeting took {took:.0f} ms: the server delays it on purpose or is loaded; "
            "mail programs with short timeouts give up."
        )
    if facts["ptr_matches"] is False:
        notes.append(
            f"The greeting names {host} but the address's PTR record says {ptr}: "
            "receiving servers and blocklist checkers flag such mismatches."
        )
    proves = f"An SMTP server answers: {reply} ({took:.0f} ms). " + " ".join(notes)
    findings.emit(
        Probe.BANNER,
        status,
        title,
        tried,
        proves.strip(),
        transcript=banner.transcript,
        duration=banner.duration,
    )
    return True


def say_hello(findings: Findings) -> Asking[dict[str, str] | None]:
    """EHLO; the extensions offered, or None when the server would not go on."""
    result = expect((yield SayHello(findings.helo)), HelloResult)
    if not _conclude_hello(findings, result):
        yield EndSession(polite=result.failure is None)
        return None
    return dict(result.extensions)


def _conclude_hello(findings: Findings, hello: HelloResult) -> bool:
    reply = hello.reply
    extensions = dict(hello.extensions)
    mangled = [key for key in extensions if MANGLED_KEYWORD.match(key)]
    size = _int_or_none(extensions.get("SIZE"))
    facts: dict[str, Any] = {
        "state": "ok",
        **reply_facts(reply),
        "ehlo_code": hello.ehlo_reply.code if hello.ehlo_reply else None,
        "ehlo_reply": str(hello.ehlo_reply) if hello.ehlo_reply else None,
        "helo_fallback": hello.helo_fallback,
        "esmtp": not hello.helo_fallback and bool(reply and reply.is_positive),
        "extensions": extensions,
        "keywords": sorted(extensions),
        "starttls": "STARTTLS" in extensions,
        "auth": extensions.get("AUTH", "").upper().split(),
        "size": size,
        **size_facts(size),
        "mangled": bool(mangled),
        "mangled_keywords": mangled,
    }
    findings.facts["ehlo"] = facts
    title = "EHLO and extensions"
    tried = f"Sent EHLO {findings.helo} (HELO if EHLO is refused) and read the extensions."
    if hello.failure is not None:
        return findings.broke(
            Probe.EHLO,
            facts,
            hello,
            title=title,
            tried=tried,
            proves=f"The server stopped answering during EHLO ({hello.failure.detail}).",
        )
    assert reply is not None
    if not reply.is_positive:
        return findings.refused(
            Probe.EHLO,
            facts,
            reply,
            hello,
            title=title,
            tried=tried,
            proves=(
                f"The server refused the greeting ({reply}): it does not accept the name "
                f"{findings.helo} or this client."
            ),
        )
    status = Status.OK
    if hello.helo_fallback:
        status = Status.WARN
        proves = (
            f"The server refused EHLO ({hello.ehlo_reply}) and accepted HELO: an old server "
            "without ESMTP, so no STARTTLS, no AUTH and no SIZE are possible."
        )
    else:
        offered = ", ".join(f"{key} {value}".strip() for key, value in sorted(extensions.items()))
        proves = f"The server speaks ESMTP and offers: {offered or 'nothing'}."
        if mangled:
            status = Status.WARN
            proves += (
                f" Masked keywords ({', '.join(mangled)}) show that a firewall's SMTP "
                "inspection rewrites the session (and hides STARTTLS)."
            )
    findings.emit(
        Probe.EHLO,
        status,
        title,
        tried,
        proves,
        transcript=hello.transcript,
        duration=hello.duration,
    )
    return True


def _banner_host(reply: SmtpReply | None) -> str | None:
    if reply is None or not reply.lines:
        return None
    words = reply.lines[0].split()
    if not words or not _HOSTNAME.match(words[0]) or words[0].isdigit():
        return None
    return words[0].lower()


def _int_or_none(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split()[0])
    except ValueError:
        return None
