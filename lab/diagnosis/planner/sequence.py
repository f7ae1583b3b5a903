"""The walk in order, and the `Planner` that hands it out one request at a time.

`plan` sequences the stages as an expert walks them: resolve the name, sweep
the ports, then one SMTP session (greeting, EHLO, TLS, AUTH, MAIL, RCPT, DATA),
then follow the message; a stage that returns False ends the walk. Each stage
asks its own questions and writes its own facts (see its module); this module
only decides what comes next. `Planner` wraps the generator in the loop the
engine drives: `next_request`, `record`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from lab.diagnosis.events import Step
from lab.diagnosis.planner import (
    audit,
    auth,
    delivery,
    envelope,
    greeting,
    ports,
    recipient,
    resolve,
    tls,
)
from lab.diagnosis.planner.asking import Asking, expect
from lab.diagnosis.planner.facts import Findings
from lab.diagnosis.requests import OpenSession, Request, Result, SessionResult
from lab.scenario.model import MailSettings, Security


class Planner:
    """Decides each probe and explains each result, with no I/O (see the package docstring).

    Args:
        settings: the mail program's settings, as the customer has them.
        helo: the name the mail program greets with (its machine's name).
        alternatives: ports tried next to the configured one.
        can_follow: the target can tell what became of an accepted message.
        can_audit: the target can try to relay from outside the customer's networks.
        now: the time certificates are judged against (injectable for tests).
    """

    def __init__(
        self,
        settings: MailSettings,
        *,
        helo: str,
        alternatives: Sequence[int] = ports.ALTERNATIVE_PORTS,
        can_follow: bool = False,
        can_audit: bool = False,
        now: datetime | None = None,
    ) -> None:
        self.findings = Findings(
            settings,
            helo=settings.helo or helo,
            alternatives=alternatives,
            can_follow=can_follow,
            now=now or datetime.now(UTC),
            can_audit=can_audit,
        )
        self._finished = False
        self._walk = plan(self.findings)
        self._request: Request | None = next(self._walk)

    @property
    def facts(self) -> dict[str, Any]:
        """Everything found so far (what the catalog matches)."""
        return self.findings.facts

    @property
    def problem(self) -> dict[str, Any] | None:
        """The decisive failure, if any."""
        return self.findings.problem

    @property
    def done(self) -> bool:
        """True once every step has been emitted."""
        return self._finished

    def next_request(self) -> Request | None:
        """The probe to run next; None when the walk is over."""
        return self._request

    def record(self, result: Result) -> list[Step]:
        """Take the result of the current request; return the steps it completes."""
        if self._request is None:
            raise RuntimeError("the diagnosis is over: nothing was asked")
        self.findings.take_steps()
        try:
            self._request = self._walk.send(result)
        except StopIteration:
            self._request = None
            if not self._finished:
                self._finished = True
                self.findings.finish()
        return self.findings.take_steps()


def plan(findings: Findings) -> Asking[None]:
    """The whole walk: names, ports, the session, a relay audit when the session relayed
    without a login, the server that refused an unknown mailbox asked directly, and a look
    at a refused client's name."""
    address = yield from resolve.resolve(findings)
    if address is None:
        return
    if not (yield from ports.scan(findings, address)):
        return
    yield from _session(findings, address)
    yield from audit.relay_audit(findings, address)
    yield from recipient.ask_recipient_server(findings)
    yield from resolve.check_client_rdns(findings)


def _session(findings: Findings, address: str) -> Asking[None]:
    """One SMTP session as the mail program holds it, then the message's fate."""
    settings = findings.settings
    implicit = settings.security is Security.TLS
    opened = expect((yield OpenSession(address, settings.port, implicit)), SessionResult)
    if opened.failure is not None:
        if opened.failure.kind != "tls":
            greeting.reconnect_failed(findings, opened)
            return
        yield from tls.handshake_failed(findings, opened.failure, opened, address, implicit=True)
        if not tls.walks_on(findings):
            return
        opened = expect(
            (yield OpenSession(address, settings.port, implicit, verify=False)), SessionResult
        )
        if not tls.implicit_unverified(findings, opened):
            return
    elif implicit:
        tls.implicit_tls(findings, opened)
    if not (yield from greeting.read_banner(findings, opened, address, implicit=implicit)):
        return
    extensions = yield from greeting.say_hello(findings)
    if extensions is None:
        return
    encrypted = implicit
    if settings.security is Security.STARTTLS:
        extensions = yield from tls.starttls(findings, extensions, address)
        if extensions is None:
            return
        encrypted = True
    elif settings.security is Security.NONE:
        tls.not_used(findings, extensions)
    if settings.auth is None:
        auth.not_configured(findings, extensions, encrypted=encrypted)
    elif not (
        yield from auth.authenticate(findings, extensions, encrypted=encrypted, address=address)
    ):
        return
    if not (yield from envelope.mail_from(findings)):
        return
    if not (yield from envelope.rcpt_to(findings)):
        return
    if not (yield from delivery.send_data(findings)):
        return
    if not findings.can_follow:
        findings.facts["outcome"] = "accepted" if "problem" not in findings.facts else "failed"
        return
    yield from delivery.follow(findings)
