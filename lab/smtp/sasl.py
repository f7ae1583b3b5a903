"""Client-side SASL for SMTP AUTH (RFC 4954): PLAIN, LOGIN and CRAM-MD5, plus masking.

Pure functions, no I/O: the session in `lab.smtp.session` decides what to send
when; this module only computes the base64 blobs and hides them again for the
transcript. Every blob computed here carries a secret, so callers must record
`MASK` in its place (see `mask_command`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable

MASK = "****"

PLAIN = "PLAIN"
LOGIN = "LOGIN"
CRAM_MD5 = "CRAM-MD5"

# The order a mail program set to "automatic" prefers among the mechanisms a server
# offers: PLAIN needs one round trip, LOGIN two; CRAM-MD5 last because servers that
# offer it must store passwords in the clear and many support desks disable it.
AUTO_PREFERENCE: tuple[str, ...] = (PLAIN, LOGIN, CRAM_MD5)
SUPPORTED: frozenset[str] = frozenset(AUTO_PREFERENCE)


def b64(text: str | bytes) -> str:
    """Base64 of `text` (UTF-8 when a str), as ASCII text without line breaks."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(data).decode("ascii")


def decode_challenge(challenge: str) -> str | None:
    """The text of a base64 `334` challenge, or None when it is not valid base64.

    Invalid UTF-8 is shown with replacement characters: the result is for people.
    """
    try:
        return base64.b64decode(challenge.strip(), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def plain_response(user: str, password: str, authzid: str = "") -> str:
    """The PLAIN initial response (RFC 4616): base64 of `authzid NUL user NUL password`."""
    return b64(f"{authzid}\0{user}\0{password}")


def login_responses(user: str, password: str) -> tuple[str, str]:
    """The two LOGIN answers, in the order servers ask: base64 user name, base64 password."""
    return b64(user), b64(password)


def cram_md5_digest(user: str, password: str, challenge: bytes) -> str:
    """`user hexdigest` where the digest is HMAC-MD5 keyed by the password (RFC 2195)."""
    digest = hmac.new(password.encode("utf-8"), challenge, hashlib.md5).hexdigest()
    return f"{user} {digest}"


def cram_md5_response(user: str, password: str, challenge_b64: str) -> str:
    """The base64 answer to a CRAM-MD5 `334 <base64 challenge>`.

    Raises:
        ValueError: the challenge is not valid base64.
    """
    try:
        challenge = base64.b64decode(challenge_b64.strip(), validate=True)
    except binascii.Error as error:
        raise ValueError(f"CRAM-MD5 challenge is not base64: {challenge_b64!r}") from error
    return b64(cram_md5_digest(user, password, challenge))


def pick_mechanism(offered: Iterable[str]) -> str | None:
    """The mechanism "automatic" chooses from an EHLO `AUTH` list, or None if none fits."""
    names = {name.upper() for name in offered}
    return next((name for name in AUTO_PREFERENCE if name in names), None)


def mask_command(line: str) -> str:
    """A client line as it may be shown: `AUTH <mech> <initial response>` loses the response.

    Only the AUTH command carries a secret in its arguments; SASL continuation
    lines are masked by the session, which knows that it is inside an exchange.
    """
    parts = line.split(" ", 2)
    if len(parts) == 3 and parts[0].upper() == "AUTH":
        return f"{parts[0]} {parts[1]} {MASK}"
    return line


def secret_forms(*secrets: str) -> set[str]:
    """The strings that must never appear in a transcript for these secrets.

    The raw text and its base64 form. Empty and very short secrets are left out:
    masking every "a" in a transcript would hide more than it protects.
    """
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= 3:
            forms.add(secret)
            forms.add(b64(secret))
    return forms


def redact(text: str, forms: Iterable[str]) -> str:
    """`text` with every occurrence of each form replaced by `MASK` (longest first)."""
    for form in sorted(forms, key=len, reverse=True):
        if form in text:
            text = text.replace(form, MASK)
    return text
