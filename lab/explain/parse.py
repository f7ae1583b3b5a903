"""Reading a pasted error text: the SMTP replies, codes, stage and software it names (pure).

A customer pastes whatever they have: a reply line, a bounce, a Postfix or Exim log
line, a Microsoft 365 NDR, an Outlook dialog, a library's exception. `recognise`
turns it into `Recognised`: the replies (multi-line continuations joined), the
basic and enhanced status codes, the DSN fields (`lab.explain.dsn` reads a whole
message), the stage the session stopped at, the client error names (errno names,
Outlook's 0x800CCC.. numbers, exception classes), the ports and the software that
wrote it. `flat` is the text with continuation prefixes and escapes removed, which
is what the catalog's phrases are searched in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lab.addresses import domain_of, host_in_domain, mta_host
from lab.explain.dsn import dsn_fields, message_text

# Reply codes of RFC 5321 and the common extensions; a number outside this set is not
# read as a reply code (a port such as 465 or 587, a year, a count).
REPLY_CODES = frozenset(
    {211, 214, 220, 221, 235, 250, 251, 252, 334, 354}
    | {421, 422, 432, 450, 451, 452, 454, 455}
    | {500, 501, 502, 503, 504, 521, 523, 530, 534, 535, 538, 550, 551, 552, 553, 554}
    | {555, 556}
)
SUBMISSION_PORTS = frozenset({25, 26, 465, 587, 2525})

_ENHANCED = re.compile(r"(?<![\w.])([245]\.\d{1,3}\.\d{1,3})(?!\.?\d)(?!\w)")
_BASIC = re.compile(r"(?<![\w.#=/:+-])([245][0-5]\d)(?=[- ]|$|[\"',)\]:;])", re.MULTILINE)
_REPLY_LINE = re.compile(
    r"(?<![\w.#=/:+-])([245][0-5]\d)([ -])(?:#?([245]\.\d{1,3}\.\d{1,3})\s+)?([^\n]*)"
)
# "550-5.7.1 " inside a wrapped reply (and Gmail's repeated "5.7.9 " after it).
_CONTINUATION = re.compile(r"(?<![\w.#=/:+-])[245][0-5]\d-(?:[245]\.\d{1,3}\.\d{1,3})?\s*")
_ESCAPES = (("\\r\\n", " "), ("\\n", " "), ("\\t", " "), ("\\'", "'"), ('\\"', '"'))
_PORT = re.compile(r"(?:\]:|:|port[\"']?[:=]?\s*|porta:\s*)(\d{2,4})\b", re.IGNORECASE)
_ERRNO = re.compile(
    r"\b(ECONNREFUSED|ETIMEDOUT|ECONNRESET|ECONNECTION|ENOTFOUND|EAI_AGAIN|EREFUSED|EDNS|"
    r"EHOSTUNREACH|ENETUNREACH|EAUTH|ESOCKET|EENVELOPE|EMESSAGE|ETLS|EPROTOCOL|EPIPE)\b"
)
_OUTLOOK = re.compile(r"\b0x[0-9A-Fa-f]{8}\b")
_EXCEPTION = re.compile(
    r"\b((?:[A-Za-z_]+\.)*(?:SMTP\w*(?:Error|Exception|Disconnected|Refused)|"
    r"\w+Exception|SSLError|SSLCertVerificationError|gaierror|"
    r"WRONG_VERSION_NUMBER|CERTIFICATE_VERIFY_FAILED|SELF_SIGNED_CERT_IN_CHAIN|"
    r"DEPTH_ZERO_SELF_SIGNED_CERT|CERT_HAS_EXPIRED|ERR_TLS_CERT_ALTNAME_INVALID|"
    r"TLSV1_ALERT_PROTOCOL_VERSION))\b"
)

# Outlook / Windows Live Mail / Outlook Express error numbers (Microsoft's documentation).
OUTLOOK_ERRORS: dict[str, str] = {
    "0x800ccc0b": "the server cannot be reached (port blocked or busy)",
    "0x800ccc0e": "cannot connect to the server",
    "0x800ccc0f": "the connection was interrupted",
    "0x800ccc13": "cannot connect to the network",
    "0x800ccc67": "the server refused the message (SMTP 5xx)",
    "0x800ccc78": "the server refused the sender",
    "0x800ccc79": "the server refused a recipient (relaying)",
    "0x80042108": "cannot connect to the incoming server",
    "0x80042109": "cannot connect to the outgoing (SMTP) server",
    "0x8004210b": "the operation timed out waiting for the server",
}

# Where the session stopped, from words that name the command or the step.
# First match wins: an explicit "in reply to X command" beats a library's context.
_STAGE_WORDS: tuple[tuple[str, str], ...] = (
    (r"in reply to (?:the )?rcpt to command|after rcpt to|rcpt to:.*(?:rejected|failed)", "rcpt"),
    (r"in reply to (?:the )?mail from command|after mail from|\(mail\)", "mail"),
    (r"in reply to (?:the )?end of data command|after end of data|data end command", "data"),
    (r"in reply to (?:the )?data command|after data", "data"),
    (r"in reply to (?:the )?(?:ehlo|helo) command|\(ehlo\)|\(helo\)", "ehlo"),
    (r"noqueue: reject: rcpt|recipient address rejected|recipients failed", "rcpt"),
    (r"password command failed|invalid login|\beauth\b|authentication|\bauth\b", "auth"),
    (r"starttls|certificate|ssl routines|\bssl\b|\btls\b|handshake", "starttls"),
    (r"greeting|banner", "banner"),
    (r"getaddrinfo|enotfound|eai_again|nxdomain|servfail|name service|name resolution", "dns"),
    (r"econnrefused|connection refused|etimedout|timed out|command: 'conn'|connect\(\)", "connect"),
    (
        r"status=(?:bounced|deferred)|diagnostic-code|remote server returned|undeliverable|"
        r"mail delivery (?:system|subsystem)|delivery (?:has )?failed|returned to sender",
        "delivery",
    ),
)
_STAGE_PATTERNS = tuple((re.compile(words, re.IGNORECASE), stage) for words, stage in _STAGE_WORDS)

# Which software wrote the text: name -> pattern.
_SOURCES: dict[str, str] = {
    "postfix": (
        r"postfix/\w+|status=(?:bounced|deferred|sent)|noqueue: reject|"
        r"this is the mail system at host"
    ),
    "exim": r"\*\* \S+ R=\S+ T=|smtp error from remote mail server|exim|retry time not reached",
    "sendmail": r"\bstat=|mailer=esmtp|sendmail",
    "microsoft-365": (
        r"outlook\.com|remote server returned|generating server|#smtp#|"
        r"smtpclientauthentication|aka\.ms"
    ),
    "gmail": r"gsmtp|support\.google\.com|google\.com",
    "yahoo": r"yahoo|\[ts0\d\]|aol\.com",
    "nodemailer": (
        r"command: ?'conn'|smtpconnection|nodemailer|\be(?:auth|socket|envelope|connection)\b"
    ),
    "phpmailer": r"smtp error:|smtp connect\(\) failed|client -> server|server -> client|phpmailer",
    "python-smtplib": r"smtplib|smtp\w*error: \(\d{3}|smtpserverdisconnected",
    "javamail": r"javax\.mail|jakarta\.mail|com\.sun\.mail",
    "dotnet": (
        r"system\.net\.mail|smtpexception|mailkit|the smtp server requires a secure connection"
    ),
    "swiftmailer": r"swift_|expected response code",
    "openssl": r"ssl routines|ssl3_|wrong version number|openssl",
    "outlook": r"0x800ccc|0x8004210|outlook cannot",
    "thunderbird": (
        r"sending of (?:the )?message failed|the mail server responded|"
        r"an error occurred while sending mail"
    ),
    "dsn": r"^\s*(?:status|diagnostic-code|action|reporting-mta|remote-mta)\s*:",
}
_SOURCE_PATTERNS = {
    name: re.compile(words, re.IGNORECASE | re.MULTILINE) for name, words in _SOURCES.items()
}


@dataclass(frozen=True)
class ReplyLine:
    """One SMTP reply as the text shows it (continuation lines joined)."""

    code: int
    enhanced: str | None
    text: str

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {"code": self.code, "enhanced": self.enhanced, "text": self.text}


@dataclass(frozen=True)
class Recognised:
    """What a pasted text says, as data."""

    flat: str
    replies: list[ReplyLine] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    enhanced: list[str] = field(default_factory=list)
    stage: str | None = None
    errors: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    dsn: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)
    # The Reporting-MTA when it lies in the final recipient's own domain and a server further
    # on refused the message (a backup MX): that server took it, then returned it.
    recipient_side_bounce: str | None = None

    @property
    def anything(self) -> bool:
        """Whether any signal at all was found."""
        return bool(self.codes or self.enhanced or self.stage or self.errors or self.dsn)

    def to_json(self) -> dict[str, Any]:
        """Plain data (without the flattened text)."""
        return {
            "replies": [reply.to_json() for reply in self.replies],
            "codes": self.codes,
            "enhanced": self.enhanced,
            "stage": self.stage,
            "errors": self.errors,
            "sources": self.sources,
            "dsn": self.dsn,
            "ports": self.ports,
        }


def flatten(text: str) -> str:
    """The text as one line: escapes undone, reply continuation prefixes removed."""
    for escaped, plain in _ESCAPES:
        text = text.replace(escaped, plain)
    text = _CONTINUATION.sub(" ", text)
    return " ".join(text.split())


def replies(text: str) -> list[ReplyLine]:
    """The SMTP replies in `text`, a reply's continuation lines ("550-…") joined to it."""
    found: list[ReplyLine] = []
    pending: tuple[int, str | None, list[str]] | None = None
    for line in text.splitlines():
        match = _REPLY_LINE.search(line)
        if match is None or int(match.group(1)) not in REPLY_CODES:
            continue
        code, separator, enhanced, rest = (
            int(match.group(1)),
            match.group(2),
            match.group(3),
            match.group(4),
        )
        if pending is not None and pending[0] == code:
            pending[2].append(rest.strip())
            enhanced = enhanced or pending[1]
        else:
            if pending is not None:
                found.append(_reply(*pending))
            pending = (code, enhanced, [rest.strip()])
        pending = (code, enhanced, pending[2])
        if separator == " ":
            found.append(_reply(*pending))
            pending = None
    if pending is not None:
        found.append(_reply(*pending))
    return found


def _reply(code: int, enhanced: str | None, parts: list[str]) -> ReplyLine:
    return ReplyLine(code, enhanced, flatten(" ".join(parts)))


def _unique(items: list[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def stage_of(text: str) -> str | None:
    """The stage the words of `text` name (see `_STAGE_WORDS`), or None."""
    for pattern, stage in _STAGE_PATTERNS:
        if pattern.search(text):
            return stage
    return None


def recognise(text: str) -> Recognised:
    """Everything `text` says that the catalog can use (see the module docstring)."""
    dsn = dsn_fields(text)
    full = message_text(text)
    flat = flatten(full)
    unescaped = full
    for escaped, plain in _ESCAPES:
        unescaped = unescaped.replace(escaped, "\n" if plain == " " else plain)
    found = replies(unescaped)
    diagnostic = dsn.get("diagnostic-code", "")
    if ";" in diagnostic:
        found += replies(diagnostic.split(";", 1)[1].strip())
    codes = _unique(
        [reply.code for reply in found]
        + [int(code) for code in _BASIC.findall(unescaped) if int(code) in REPLY_CODES]
    )
    enhanced = _unique(_ENHANCED.findall(unescaped) + ([dsn["status"]] if "status" in dsn else []))
    errors = _unique(
        [name.upper() for name in _ERRNO.findall(full)]
        + [number.lower() for number in _OUTLOOK.findall(full)]
        + [name.rsplit(".", 1)[-1] for name in _EXCEPTION.findall(full)]
    )
    ports = _unique([int(port) for port in _PORT.findall(full) if int(port) in SUBMISSION_PORTS])
    sources = [name for name, pattern in _SOURCE_PATTERNS.items() if pattern.search(full)]
    return Recognised(
        flat=flat,
        replies=found,
        codes=codes,
        enhanced=[code for code in enhanced if not code.startswith("2.")],
        stage=stage_of(flat),
        errors=errors,
        sources=sources,
        dsn=dsn,
        ports=ports,
        recipient_side_bounce=recipient_side_reporter(dsn),
    )


def recipient_side_reporter(dsn: dict[str, str]) -> str | None:
    """The DSN's Reporting-MTA if it is a host of the final recipient's domain that passed
    the message on and had it refused further on (its Remote-MTA is another host), else None.
    A gateway that bounces on its own, learning its mailboxes late, is not that."""
    reporter = mta_host(dsn.get("reporting-mta", ""))
    remote = mta_host(dsn.get("remote-mta", ""))
    if not remote or remote == reporter:
        return None
    recipient = dsn.get("final-recipient", "").rpartition(";")[2]
    return reporter if host_in_domain(reporter, domain_of(recipient)) else None
