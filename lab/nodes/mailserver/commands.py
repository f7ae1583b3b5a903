"""The answers to SMTP commands outside the mail transaction, without I/O: VRFY and ETRN.

The decisions follow Postfix 3.7, the lab's reference MTA, reply for reply
(`tests/runtime/test_commands_postfix.py` holds the two side by side):

- VRFY, `vrfy: enabled` (Postfix's default): the recipient checks of RCPT
  decide, without their side effects (a VRFY is no delivery attempt, so it
  starts no greylist triplet and no mailbox state is read). A mailbox RCPT
  would accept is answered 252 2.0.0 with the argument as given: 252 rather
  than 250, because a server that accepts may still bounce later. `ambiguous`
  answers 252 2.1.5 for every address, as RFC 5321 §7.3 lets a site that hides
  its users do; `disabled` answers 502 5.5.1 (`disable_vrfy_command = yes`).
- ETRN (RFC 1985) starts a queue run for a domain the relay queues for (Postfix's
  `fast_flush_domains`, which defaults to `relay_domains`): 250; any other
  domain is refused with 459, never 458 (that one is Postfix's own trouble).

EXPN, TURN and ATRN are not implemented by Postfix either: the engine's "command
not recognized" answers them (`protocol.LabSMTP.push`), 500 5.5.2.
"""

from __future__ import annotations

from lab.addresses import domain_of
from lab.nodes.mailserver.recipients import RecipientPolicy
from lab.replies import (
    S250_QUEUING_STARTED,
    S252_CANNOT_VRFY,
    S252_VRFY_ADDRESS,
    S459_ETRN_UNAVAILABLE,
    S501_VRFY_SYNTAX,
    S502_VRFY_DISABLED,
    S550_UNKNOWN_RELAY_RECIPIENT,
    S550_USER_UNKNOWN,
    S554_RELAY_DENIED,
)
from lab.scenario.vocabulary import VrfyPolicy


def vrfy_reply(
    policy: RecipientPolicy, argument: str, *, client: str, authenticated: bool
) -> tuple[str, str]:
    """The decision (an event's `decision` field) and the reply line for `VRFY argument`."""
    setting = policy.config.vrfy
    if setting is VrfyPolicy.DISABLED:
        return "disabled", S502_VRFY_DISABLED()
    argument = argument.strip()
    if not argument:
        return "syntax", S501_VRFY_SYNTAX()
    if setting is VrfyPolicy.AMBIGUOUS:
        return "ambiguous", S252_CANNOT_VRFY()
    address = argument.removeprefix("<").removesuffix(">")
    recipient = address.lower()
    if policy.is_local(recipient):
        if policy.has_mailbox(recipient) or policy.config.catch_all:
            return "known", S252_VRFY_ADDRESS(address=argument)
        return "user-unknown", S550_USER_UNKNOWN(address=address)
    if domain_of(recipient) in policy.relay_domains:
        known = policy.relay_recipients is None or recipient in policy.relay_recipients
        if known:
            return "known", S252_VRFY_ADDRESS(address=argument)
        return "user-unknown", S550_UNKNOWN_RELAY_RECIPIENT(address=address)
    if policy.may_relay(client, authenticated=authenticated):
        return "relay", S252_VRFY_ADDRESS(address=argument)
    return "relay-denied", S554_RELAY_DENIED(address=address)


def etrn_reply(policy: RecipientPolicy, domain: str) -> tuple[bool, str]:
    """Whether `ETRN domain` starts a queue run for the domain, and the reply line."""
    if domain.lower() in policy.relay_domains:
        return True, S250_QUEUING_STARTED()
    return False, S459_ETRN_UNAVAILABLE(domain=domain)
