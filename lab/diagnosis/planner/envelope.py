"""Stage 6, the envelope: does the server take this sender and these recipients?

`mail_from` asks `MailFrom` and concludes whether the sender is accepted;
`rcpt_to` asks `RcptTo` and sorts the recipients into accepted and refused
(some refused is a failure, yet the message still goes to the others). Sets
the `mail` and `rcpt` facts. `suggest_addresses` proposes, for the remedy, the
known addresses closest to the refused ones ("Did you mean").
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect, polite
from lab.diagnosis.planner.facts import Findings, reply_facts
from lab.diagnosis.requests import EndSession, MailFrom, RcptResult, RcptTo, SessionResult


def mail_from(findings: Findings) -> Asking[bool]:
    """Announce the sender; False (the session ended) when the server will not take it."""
    mail = expect((yield MailFrom(findings.settings.sender)), SessionResult)
    if not _conclude_mail(findings, mail):
        yield EndSession(polite=polite(mail))
        return False
    return True


def rcpt_to(findings: Findings) -> Asking[bool]:
    """Name the recipients; False (the session ended) when none of them is taken."""
    rcpt = expect((yield RcptTo(tuple(findings.settings.to))), RcptResult)
    if not _conclude_rcpt(findings, rcpt):
        yield EndSession(polite=rcpt.failure is None)
        return False
    return True


def _conclude_mail(findings: Findings, mail: SessionResult) -> bool:
    facts = {"state": "ok", **reply_facts(mail.reply)}
    findings.facts["mail"] = facts
    title = f"MAIL FROM:<{findings.settings.sender}>"
    tried = "Announced the sender (with the message size when SIZE is offered)."
    if mail.failure is not None:
        return findings.broke(
            Probe.MAIL,
            facts,
            mail,
            title=title,
            tried=tried,
            proves=f"The session broke at MAIL ({mail.failure.detail}).",
        )
    if mail.reply is not None and not mail.reply.is_positive:
        return findings.refused(
            Probe.MAIL,
            facts,
            mail.reply,
            mail,
            title=title,
            tried=tried,
            proves=f"The server refused the sender: {mail.reply}.",
        )
    findings.emit(
        Probe.MAIL,
        Status.OK,
        title,
        tried,
        f"The sender is accepted ({mail.reply}).",
        transcript=mail.transcript,
        duration=mail.duration,
    )
    return True


def _conclude_rcpt(findings: Findings, rcpt: RcptResult) -> bool:
    accepted = [address for address, reply in rcpt.replies if reply.is_positive]
    refused = {address: reply for address, reply in rcpt.replies if not reply.is_positive}
    first = next(iter(refused.values()), None)
    facts: dict[str, Any] = {
        "state": "ok",
        **reply_facts(first),
        "accepted": accepted,
        "refused": [
            {"address": address, **reply_facts(reply)} for address, reply in refused.items()
        ],
        "refused_addresses": list(refused),
        "count": len(findings.settings.to),
    }
    findings.facts["rcpt"] = facts
    title = "RCPT TO"
    tried = f"Named the recipients: {', '.join(findings.settings.to)}."
    if rcpt.failure is not None:
        return findings.broke(
            Probe.RCPT,
            facts,
            rcpt,
            title=title,
            tried=tried,
            proves=f"The session broke at RCPT ({rcpt.failure.detail}).",
        )
    if first is None:
        findings.emit(
            Probe.RCPT,
            Status.OK,
            title,
            tried,
            "Every recipient is accepted.",
            transcript=rcpt.transcript,
            duration=rcpt.duration,
        )
        return True
    refusals = "; ".join(f"{address}: {reply}" for address, reply in refused.items())
    if accepted:
        proves = f"Some recipients are refused ({refusals}); the others are accepted."
    else:
        proves = f"The server refused the recipients: {refusals}."
    findings.refused(
        Probe.RCPT,
        facts,
        first,
        rcpt,
        title=title,
        tried=tried,
        proves=proves,
        state="partial" if accepted else "rejected",
    )
    # Some accepted: the message still goes to them, so the walk goes on.
    return bool(accepted)


def suggest_addresses(
    wanted: Sequence[str], refused: Sequence[str], directory: Sequence[str]
) -> list[str] | None:
    """`wanted` with each refused address replaced by the closest known one ("Did you mean").

    None when a refused address has no plausible match: then there is no
    settings change to propose, only words.
    """
    known = {address.lower(): address for address in directory}
    fixed: list[str] = []
    refused_lower = {address.lower() for address in refused}
    for address in wanted:
        if address.lower() not in refused_lower:
            fixed.append(address)
            continue
        matches = difflib.get_close_matches(address.lower(), list(known), n=1, cutoff=0.75)
        if not matches or matches[0] == address.lower():
            return None
        fixed.append(known[matches[0]])
    return fixed if fixed != list(wanted) else None
