"""Stage 9, after a bounce for a mailbox that does not exist: ask the server that refused it.

Support desks "check" an address with VRFY and trust the answer. `ask_recipient_server`
asks `AskRecipientServer` at the server further on that refused the recipient (its
address is the relay's last delivery attempt), from a host outside the customer's
networks: VRFY, then MAIL FROM:<> and RCPT TO, then RSET (no DATA: nothing is sent).
`verdict` says what the two answers prove, without I/O:

- 252 promises nothing (RFC 5321 §3.5.3): a server that hides its users says it for
  every address, and even Postfix's 252 for a known one means "would be accepted now";
- 502/500 means VRFY is off or not implemented, which says nothing about the mailbox;
- 250/251 is a real yes, and 550 a real no, from a server that allows VRFY at all;
- RCPT TO is the server's actual decision, the one the bounce reported.

Sets the `recipient` facts; an INFO step (WARN when VRFY contradicts RCPT), never the
`problem`: the bounce already is.
"""

from __future__ import annotations

from typing import Any

from lab.diagnosis.events import Probe, Status
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings, ms, reply_facts
from lab.diagnosis.requests import AskRecipientServer, RecipientAnswers
from lab.smtp.reply import SmtpReply

SMTP_PORT = 25
ASKING_HELO = "recipient-check.invalid"
UNKNOWN_MAILBOX = ("5.1.1", "4.1.1")


def ask_recipient_server(findings: Findings) -> Asking[None]:
    """VRFY and RCPT at the server that refused a bounced recipient, when one did."""
    delivery = findings.facts.get("delivery") or {}
    address = delivery.get("remote_address")
    bounced = delivery.get("bounced_addresses") or []
    if not findings.can_audit or not address or not bounced:
        return
    if delivery.get("status") not in UNKNOWN_MAILBOX:
        return
    request = AskRecipientServer(str(address), SMTP_PORT, ASKING_HELO, str(bounced[0]))
    _conclude(findings, request, expect((yield request), RecipientAnswers))


def verdict(vrfy: SmtpReply | None, rcpt: SmtpReply | None) -> tuple[str, bool | None]:
    """What VRFY said about the mailbox ("exists", "unknown", "no answer": 252, 502...),
    and whether RCPT TO accepts it (None: not reached)."""
    accepted = None if rcpt is None else rcpt.is_positive
    if vrfy is None:
        return "not asked", accepted
    if vrfy.code in (250, 251):
        return "exists", accepted
    if vrfy.code in (550, 551, 553):
        return "unknown", accepted
    return "no answer", accepted


def _conclude(findings: Findings, request: AskRecipientServer, answers: RecipientAnswers) -> None:
    said, accepted = verdict(answers.vrfy, answers.rcpt)
    vrfy = answers.vrfy
    facts: dict[str, Any] = {
        "source": answers.source,
        "address": request.address,
        "recipient": request.recipient,
        "vrfy": reply_facts(vrfy),
        "rcpt": reply_facts(answers.rcpt),
        "vrfy_says": said,
        # 252 for a mailbox RCPT refuses: the answer a support desk misreads as "exists".
        "vrfy_misleading": bool(vrfy and vrfy.code == 252 and accepted is False),
        "rcpt_accepts": accepted,
        "ms": ms(answers.duration),
    }
    findings.facts["recipient"] = facts
    tried = (
        f"From {answers.source}, outside the customer's networks: VRFY {request.recipient}, "
        f"then MAIL FROM:<> and RCPT TO:<{request.recipient}> at {request.address} port "
        f"{request.port}, then RSET (no DATA: nothing was sent)."
    )
    findings.emit(
        Probe.RECIPIENT,
        Status.WARN if facts["vrfy_misleading"] else Status.INFO,
        "Ask the recipient's server",
        tried,
        _proves(answers, said, accepted),
        transcript=answers.transcript,
        duration=answers.duration,
    )


def _proves(answers: RecipientAnswers, said: str, accepted: bool | None) -> str:
    vrfy, rcpt = answers.vrfy, answers.rcpt
    if vrfy is None:
        why = answers.failure.detail if answers.failure else "no reply"
        return f"The server could not be asked ({why}); the bounce stands as it is."
    if said == "no answer" and vrfy.code == 252:
        meaning = (
            f"VRFY answered {vrfy}: 252 means 'cannot verify, will try': a server that hides "
            "its users says it for every address, so it proves nothing about the mailbox."
        )
    elif said == "no answer":
        meaning = f"VRFY answered {vrfy}: VRFY is switched off here, which says nothing."
    else:
        meaning = (
            f"VRFY answered {vrfy}: the mailbox {'exists' if said == 'exists' else 'is unknown'}."
        )
    if rcpt is None:
        return f"{meaning} RCPT TO was not reached."
    decision = "takes" if accepted else "refuses"
    return (
        f"{meaning} RCPT TO answered {rcpt}: the server {decision} the address; that is its "
        "real decision, and the one the bounce reported. Check an address with RCPT TO, "
        "never with VRFY."
    )
