"""What every probe works with: the target, the mail program's settings, the clock, TLS.

A `ProbeContext` is built once per diagnosis and handed to every runner. The
TLS contexts are here because several probes connect: the mail program's own
(verifying, with the target's trust anchor) for the main session, and two that
accept anything, for looking only.
"""

from __future__ import annotations

import contextlib
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lab.smtp.tls import client_tls_context

if TYPE_CHECKING:
    from lab.diagnosis.target import DiagnosisTarget
    from lab.scenario.model import MailSettings


@dataclass(frozen=True)
class ProbeContext:
    """The world a diagnosis probes, as the mail program sees it.

    Args:
        target: the world being diagnosed.
        settings: the mail program's settings (timeouts, TLS verification, the message).
        clock: monotonic seconds.
        helo: the name the mail program greets with.
    """

    target: DiagnosisTarget
    settings: MailSettings
    clock: Callable[[], float]
    helo: str

    @property
    def server_name(self) -> str:
        """The name TLS checks the certificate against (the configured server)."""
        return self.settings.server.strip("[]")

    def ms_since(self, start: float) -> float:
        """Milliseconds since `start` on the clock."""
        return round((self.clock() - start) * 1000, 1)

    def verify_context(self) -> ssl.SSLContext:
        """The mail program's own TLS: verification as configured, the target's CA."""
        return client_tls_context(verify=self.settings.verify_tls, ca_file=self.target.ca_file)


def insecure_context() -> ssl.SSLContext:
    """TLS that accepts any certificate: for looking, never for sending mail."""
    return client_tls_context(verify=False)


def permissive_context() -> ssl.SSLContext:
    """Like `insecure_context`, and also accepts TLS 1.0/1.1 and weak ciphers.

    Only used to learn what an outdated server speaks after the mail program's
    own (strict) handshake failed.
    """
    context = insecure_context()
    with warnings.catch_warnings():
        # TLSVersion.TLSv1 is deprecated; using it here is the point (detecting old servers).
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    with contextlib.suppress(ssl.SSLError):
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context
