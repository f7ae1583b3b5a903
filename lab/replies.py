"""SMTP replies the lab's servers give, as named constants.

Shared by server handlers, the fault catalog and tests, so that a reply text
lives in one place. The name carries the code; `tests/test_replies.py`
checks that the code, the enhanced code's class and the name agree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """A reply: basic code (RFC 5321), enhanced code (RFC 3463) or "", and text."""

    code: int
    enhanced: str
    text: str

    def __call__(self, **values: str) -> str:
        """The reply line, with `{placeholders}` in the text filled in."""
        text = self.text.format(**values) if values else self.text
        return f"{self.code} {self.enhanced} {text}" if self.enhanced else f"{self.code} {text}"


# --- success ---------------------------------------------------------------------------------
S250_OK = Reply(250, "2.0.0", "OK")
S250_SENDER_OK = Reply(250, "2.1.0", "Sender <{address}> OK")
S250_RECIPIENT_OK = Reply(250, "2.1.5", "Recipient <{address}> OK")
S250_QUEUED = Reply(250, "2.0.0", "Ok: queued as {queue_id}")
S250_DELIVERED = Reply(250, "2.0.0", "Ok: delivered as {queue_id}")
# SMTP commands beyond the mail transaction, in Postfix 3.7's words (ETRN's carry no enhanced
# code there). VRFY of an address the recipient checks accept: 252, never 250 (no certainty).
S252_VRFY_ADDRESS = Reply(252, "2.0.0", "{address}")
# A server that hides its users (RFC 5321 §7.3); 2.1.5 as Exchange Online and Gmail say it.
S252_CANNOT_VRFY = Reply(
    252, "2.1.5", "Cannot VRFY user, but will accept message and attempt delivery"
)
S250_QUEUING_STARTED = Reply(250, "", "Queuing started")

# --- temporary failures ------------------------------------------------------------------------
S421_TOO_MANY = Reply(421, "4.7.0", "{hostname} Too many connections, try again later")
S421_TOO_MANY_FROM_CLIENT = Reply(
    421, "4.7.0", "{hostname} Error: too many connections from {client}"
)
S421_TIMEOUT = Reply(421, "4.4.2", "{hostname} Error: timeout exceeded")
S451_GREYLISTED = Reply(
    451, "4.7.1", "<{address}>: Recipient address rejected: Greylisted, try again later"
)
S451_LOCAL_ERROR = Reply(451, "4.3.0", "Error: local error in processing")
S452_MAILBOX_FULL = Reply(452, "4.2.2", "<{address}>: Mailbox full, try again later")
S454_TLS_UNAVAILABLE = Reply(454, "4.7.0", "TLS not available due to local problem")
# Postfix's reject_unknown_client_hostname (no PTR, or a PTR not confirmed by its A record);
# 450 is Postfix's default unknown_client_reject_code.
S450_UNKNOWN_CLIENT = Reply(
    450, "4.7.25", "Client host rejected: cannot find your hostname, [{address}]"
)
S450_SENDER_DOMAIN_NOT_FOUND = Reply(
    450, "4.1.8", "<{address}>: Sender address rejected: Domain not found"
)
S452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "Error: too many recipients")
# ETRN (RFC 1985) for a domain the server does not queue for (Postfix: not in
# fast_flush_domains, which defaults to relay_domains).
S459_ETRN_UNAVAILABLE = Reply(459, "", "<{domain}>: service unavailable")

# --- permanent failures -----------------------------------------------------------------------
S502_EHLO_NOT_IMPLEMENTED = Reply(502, "5.5.1", "EHLO not implemented")
S502_NOT_RECOGNIZED = Reply(502, "5.5.2", "Error: command not recognized")
# A command the server does not implement at all (Postfix: EXPN, TURN, ATRN, HELP).
S500_NOT_RECOGNIZED = Reply(500, "5.5.2", "Error: command not recognized")
S500_ETRN_SYNTAX = Reply(500, "", "Syntax: ETRN domain")
S501_ETRN_DOMAIN = Reply(501, "", "Error: invalid parameter syntax")
S501_VRFY_SYNTAX = Reply(501, "5.5.4", "Syntax: VRFY address [SMTPUTF8]")
S502_VRFY_DISABLED = Reply(502, "5.5.1", "VRFY command is disabled")
S503_MAIL_IN_PROGRESS = Reply(503, "", "Error: MAIL transaction in progress")
S504_MECHANISM = Reply(504, "5.5.4", "Unrecognized authentication type")
S530_AUTH_REQUIRED = Reply(530, "5.7.0", "Authentication required")
S530_STARTTLS_FIRST = Reply(530, "5.7.0", "Must issue a STARTTLS command first")
S535_BAD_CREDENTIALS = Reply(535, "5.7.8", "Authentication credentials invalid")
S538_ENCRYPTION_REQUIRED = Reply(
    538, "5.7.11", "Encryption required for requested authentication mechanism"
)
S550_USER_UNKNOWN = Reply(550, "5.1.1", "<{address}>: Recipient address rejected: User unknown")
# Postfix's words for an address of relay_domains missing from relay_recipient_maps.
S550_UNKNOWN_RELAY_RECIPIENT = Reply(
    550, "5.1.1", "<{address}>: Recipient address rejected: User unknown in relay recipient table"
)
S550_MAILBOX_DISABLED = Reply(550, "5.2.1", "<{address}>: Mailbox disabled")
S552_OVER_QUOTA = Reply(552, "5.2.2", "<{address}>: Mailbox full")
S552_TOO_BIG = Reply(552, "5.3.4", "Message size exceeds fixed limit")
S554_RELAY_DENIED = Reply(554, "5.7.1", "<{address}>: Relay access denied")
# The same check with unknown_client_reject_code = 550, or Gmail's permanent PTR policy.
S550_UNKNOWN_CLIENT = Reply(
    550, "5.7.25", "Client host rejected: cannot find your hostname, [{address}]"
)
S550_SPF_FAIL = Reply(
    550, "5.7.23", "SPF validation failed: {domain} does not permit [{client}] to send its mail"
)
# OpenDMARC's reply at the end of DATA (RejectFailures true), as Postfix relays it.
S550_DMARC_REJECT = Reply(550, "5.7.1", "rejected by DMARC policy for {domain}")
S550_SEND_AS_DENIED = Reply(
    550, "5.7.60", "Client does not have permissions to send as this sender"
)
S554_DNSBL_LISTED = Reply(
    554, "5.7.1", "Service unavailable; Client host [{address}] blocked using {zone}"
)
# RFC 5321 §3.1: a server that will not serve this client may greet with 554.
S554_NO_SERVICE = Reply(554, "5.7.1", "{hostname} No SMTP service here")

# --- added by the mail server (inbound side) ---------------------------------------------------
S501_AUTH_SYNTAX = Reply(501, "5.5.2", "Syntax error in authentication exchange")
S503_AUTH_DISABLED = Reply(503, "5.5.1", "Error: authentication not enabled")
