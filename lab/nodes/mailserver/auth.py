"""Server-side SMTP AUTH: the user table check for PLAIN, LOGIN and CRAM-MD5.

aiosmtpd speaks PLAIN and LOGIN itself and hands the decoded login and
password to an `authenticator` callable; CRAM-MD5 (RFC 2195) it lacks, so
`AuthSMTP` adds it as an `auth_CRAM_MD5` method, which aiosmtpd collects like
its own `auth_*` methods, and passes the client's answer to the same
authenticator. One callable therefore decides every mechanism, and records
each attempt as an "auth" event: mechanism, user and outcome, never a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    LoginPassword,
    Session,
    auth_mechanism,
    syntax,
)

from lab.nodes.events import EventLog
from lab.replies import S501_AUTH_SYNTAX
from lab.scenario.model import AuthMechanism

# aiosmtpd's own mechanisms plus ours: the names `auth_exclude_mechanism` can drop.
KNOWN_MECHANISMS = frozenset(mechanism.value for mechanism in AuthMechanism)


@dataclass(frozen=True)
class CramMd5Answer:
    """What a CRAM-MD5 client sent back: its user name and HMAC-MD5 of our challenge."""

    user: str
    challenge: bytes
    digest: str

    def matches(self, password: str) -> bool:
        """True when `digest` was computed with `password` (compared in constant time)."""
        expected = hmac.new(password.encode("utf-8"), self.challenge, hashlib.md5).hexdigest()
        return hmac.compare_digest(expected, self.digest.lower())


class UserTable:
    """The aiosmtpd `authenticator`: checks credentials against the configured users.

    Args:
        users: login name -> password, as the scenario lists them.
        events: where each attempt is recorded.
    """

    def __init__(self, users: dict[str, str], events: EventLog) -> None:
        self.users = users
        self.events = events

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        """Decide one attempt; `handled=False` lets aiosmtpd send 235 or 535 itself."""
        user, reason = self._check(data)
        self.events.emit(
            "auth",
            mechanism=mechanism,
            user=user,
            success=reason is None,
            reason=reason,
            client=client_address(session),
        )
        if reason is not None:
            return AuthResult(success=False, handled=False)
        # The session keeps the user name only: the password must not outlive this call.
        return AuthResult(success=True, handled=False, auth_data=user)

    def _check(self, data: Any) -> tuple[str | None, str | None]:
        """(user, None) when the credentials are good, else (user, why not)."""
        if isinstance(data, LoginPassword):
            user = data.login.decode("utf-8", "replace")
            password = self.users.get(user)
            if password is None:
                return user, "unknown user"
            given = data.password.decode("utf-8", "replace")
            if not hmac.compare_digest(password.encode("utf-8"), given.encode("utf-8")):
                return user, "wrong password"
            return user, None
        if isinstance(data, CramMd5Answer):
            password = self.users.get(data.user)
            if password is None:
                return data.user, "unknown user"
            if not data.matches(password):
                return data.user, "wrong password"
            return data.user, None
        return None, "unsupported credentials"


def client_address(session: Session) -> str:
    """The address the client connects from: the PROXY header's source when there is one."""
    proxy = session.proxy_data
    if proxy is not None and proxy.src_addr is not None:
        return str(proxy.src_addr)
    # aiosmtpd annotates `peer` as a str; it holds the socket's (host, port) tuple.
    peer: Any = session.peer
    if isinstance(peer, tuple | list) and peer:
        return str(peer[0])
    return str(peer or "")


class AuthSMTP(SMTP):
    """aiosmtpd's SMTP engine with CRAM-MD5 and case-insensitive mechanism names."""

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        """AUTH with the mechanism name upper-cased: RFC 4954 names are case-insensitive.

        aiosmtpd looks the name up as sent, so "AUTH plain" would get a 504.
        """
        if arg:
            mechanism, space, rest = arg.partition(" ")
            arg = mechanism.upper() + space + rest
        await super().smtp_AUTH(arg)

    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, _: SMTP, args: list[str]) -> AuthResult:
        """RFC 2195: send a one-time challenge, expect `user hex(HMAC-MD5(password, challenge))`.

        The challenge is unique per attempt (random, time, our name), so a
        recorded answer cannot be replayed.
        """
        if len(args) > 1:
            # CRAM-MD5 has no initial response: the server must speak first.
            await self.push(S501_AUTH_SYNTAX())
            return AuthResult(success=False, handled=True)
        challenge = f"<{secrets.randbits(64)}.{int(time.time())}@{self.hostname}>".encode()
        answer = await self.challenge_auth(challenge)
        if answer is MISSING:
            # challenge_auth already answered (the client sent "*" or bad base64).
            return AuthResult(success=False, handled=True)
        assert isinstance(answer, bytes)
        user, _space, digest = answer.decode("utf-8", "replace").rpartition(" ")
        if not user or not digest:
            await self.push(S501_AUTH_SYNTAX())
            return AuthResult(success=False, handled=True)
        return self._authenticate("CRAM-MD5", CramMd5Answer(user, challenge, digest))
