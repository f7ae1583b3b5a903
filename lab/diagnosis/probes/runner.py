"""The runner: carries out each request of the planner, and decides nothing.

`ProbeRunner.run(request)` dispatches one request of `lab.diagnosis.planner`
to the probe that owns it and returns what it saw as a plain result: DNS
(`lookups`), the port sweep (`ports`), the main session (`session`), the side
looks and the relay audit (`side`) and the message's fate (`delivery`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from lab.diagnosis.probes import delivery, lookups, ports, side
from lab.diagnosis.probes.context import ProbeContext
from lab.diagnosis.probes.session import MainSession
from lab.diagnosis.requests import (
    AskRecipientServer,
    AuditRelay,
    Authenticate,
    CheckReverseDns,
    EndSession,
    FollowMessage,
    InspectTls,
    LookupDns,
    MailFrom,
    OpenSession,
    PeekAfterStarttls,
    RcptTo,
    ReadBanner,
    Request,
    Result,
    SayHello,
    ScanPorts,
    SendData,
    StartTls,
    TryOtherTlsMode,
)

if TYPE_CHECKING:
    from lab.diagnosis.target import DiagnosisTarget
    from lab.scenario.model import MailSettings


class ProbeRunner:
    """Carries out the planner's requests against a `DiagnosisTarget`.

    Args:
        target: the world being diagnosed.
        settings: the mail program's settings (timeouts, TLS verification, the message).
        clock: monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        target: DiagnosisTarget,
        settings: MailSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.context = ProbeContext(target, settings, clock, settings.helo or target.helo)
        self.main = MainSession(self.context)

    async def run(self, request: Request) -> Result:
        """Carry out one request."""
        context, main = self.context, self.main
        match request:
            case LookupDns():
                return await lookups.lookup_dns(context, request)
            case ScanPorts():
                return await ports.scan_ports(context, request)
            case OpenSession():
                return await main.open(request)
            case ReadBanner():
                return await main.read_banner()
            case SayHello():
                return await main.say_hello(request.name)
            case StartTls():
                return await main.start_tls(request)
            case Authenticate():
                return await main.authenticate(request)
            case MailFrom():
                return await main.mail_from(request)
            case RcptTo():
                return await main.rcpt_to(request.recipients)
            case SendData():
                return await main.send_data()
            case EndSession():
                return await main.end(polite=request.polite)
            case TryOtherTlsMode():
                return await side.try_other_mode(context, request)
            case InspectTls():
                return await side.inspect_tls(context, request)
            case PeekAfterStarttls():
                return await side.peek_after_starttls(context, request)
            case FollowMessage():
                return await delivery.follow(context, main)
            case AuditRelay():
                return await side.audit_relay(context, request)
            case AskRecipientServer():
                return await side.ask_recipient_server(context, request)
            case CheckReverseDns():
                return await lookups.check_reverse_dns(context, request.address)
        raise TypeError(f"unknown request {request!r}")  # pragma: no cover

    async def close(self) -> None:
        """Close whatever is still open; idempotent."""
        await self.main.end(polite=False)
