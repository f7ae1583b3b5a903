"""What Postfix cannot be made to do of a mail server's policy: one reason per fault, so a
scenario is refused with a clear message instead of running a different world."""

from __future__ import annotations

from lab.nodes.config import ListenerConfig, MailServerConfig
from lab.scenario.vocabulary import MailboxState, MtaSoftware, TlsVersions, VrfyPolicy

# Postfix's own greeting and session cannot be bent like this without patching it.
_GREETING_FAULTS = {
    "tarpit": "a server that never greets",
    "no_service": "a 554 greeting",
    "drop_during_data": "dropping the connection during DATA",
}


def refusals(config: MailServerConfig) -> list[str]:
    """Why `config` cannot run as Postfix; empty when it can."""
    if config.software is not MtaSoftware.POSTFIX:
        return ["extra 'postfix' settings need software: postfix"] if config.postfix else []
    reasons = [
        f"Postfix cannot express {what}"
        for field, what in _GREETING_FAULTS.items()
        if getattr(config, field)
    ]
    if config.banner_delay > 0:
        reasons.append("Postfix cannot express a delayed greeting (banner_delay)")
    if not config.esmtp:
        reasons.append("Postfix always speaks ESMTP (esmtp: false)")
    if config.checks.check_spf:
        reasons.append("SPF checks need a policy daemon the node image lacks (check_spf)")
    if config.catch_all:
        reasons.append(
            "the lab's Postfix refuses unknown mailboxes at RCPT (catch_all: accept-then-bounce)"
        )
    if config.vrfy is VrfyPolicy.AMBIGUOUS:
        reasons.append(
            "Postfix answers VRFY from its recipient checks or refuses it, never 252 for "
            "every address (vrfy: ambiguous)"
        )
    if config.checks.check_dmarc:
        reasons.append("DMARC checks need OpenDMARC, which the node image lacks (check_dmarc)")
    for address, state in config.mailboxes.items():
        if state is not MailboxState.ACTIVE:
            reasons.append(f"Postfix has no per-mailbox state '{state}' ({address})")
    if config.greylist is not None and config.greylist.recipients:
        reasons.append("postgrey greylists every recipient (greylist.recipients)")
    if config.rate_limit is not None and config.rate_limit.ports:
        reasons.append("Postfix's connection rate limit applies to every port (rate_limit.ports)")
    if config.queue is not None and config.queue.lifetime < 1.0:
        # Rounded up to a second it would outlive what the scenario compares it with
        # (a rate window, a retry): a different world, not the same one in other words.
        reasons.append(
            f"Postfix counts queue lifetimes in whole seconds; this one is "
            f"{config.queue.lifetime:.2f} lab seconds (queue.lifetime)"
        )
    for listener in config.listeners:
        reasons.extend(_listener_refusals(listener))
    return reasons


def _listener_refusals(listener: ListenerConfig) -> list[str]:
    port = listener.port
    reasons = []
    if listener.starttls_broken:
        reasons.append(f"listener {port}: Postfix cannot advertise a STARTTLS it then refuses")
    if listener.tls_versions is not TlsVersions.MODERN:
        reasons.append(f"listener {port}: legacy TLS versions are not offered (tls_versions)")
    return reasons
