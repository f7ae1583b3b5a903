"""master.cf of a Postfix node: Postfix's own services (none chrooted: the container is the
jail) and one smtpd per lab listener, its TLS mode and AUTH policy as `-o` overrides."""

from __future__ import annotations

from lab.nodes.config import ListenerConfig, MailServerConfig
from lab.nodes.postfix.maincf import sender_restrictions
from lab.scenario.vocabulary import AuthPolicy, ListenerTls

# name, type, private, unpriv, chroot, wakeup, maxproc, command (Debian's defaults, chroot n)
_SERVICES = (
    ("pickup", "unix", "n", "-", "n", "60", "1", "pickup"),
    ("cleanup", "unix", "n", "-", "n", "-", "0", "cleanup"),
    ("qmgr", "unix", "n", "-", "n", "300", "1", "qmgr"),
    ("tlsmgr", "unix", "-", "-", "n", "1000?", "1", "tlsmgr"),
    ("rewrite", "unix", "-", "-", "n", "-", "-", "trivial-rewrite"),
    ("bounce", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("defer", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("trace", "unix", "-", "-", "n", "-", "0", "bounce"),
    ("verify", "unix", "-", "-", "n", "-", "1", "verify"),
    ("flush", "unix", "n", "-", "n", "1000?", "0", "flush"),
    ("proxymap", "unix", "-", "-", "n", "-", "-", "proxymap"),
    ("proxywrite", "unix", "-", "-", "n", "-", "1", "proxymap"),
    ("smtp", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("relay", "unix", "-", "-", "n", "-", "-", "smtp"),
    ("showq", "unix", "n", "-", "n", "-", "-", "showq"),
    ("error", "unix", "-", "-", "n", "-", "-", "error"),
    ("retry", "unix", "-", "-", "n", "-", "-", "error"),
    ("discard", "unix", "-", "-", "n", "-", "-", "discard"),
    ("local", "unix", "-", "n", "n", "-", "-", "local"),
    ("virtual", "unix", "-", "n", "n", "-", "-", "virtual"),
    ("lmtp", "unix", "-", "-", "n", "-", "-", "lmtp"),
    ("anvil", "unix", "-", "-", "n", "-", "1", "anvil"),
    ("scache", "unix", "-", "-", "n", "-", "1", "scache"),
    ("postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"),
)


def master_cf(config: MailServerConfig) -> str:
    """The whole master.cf."""
    lines = [
        f"{listener.port} inet n - n - - smtpd"
        + "".join(f"\n  -o {key}={value}" for key, value in listener_options(config, listener))
        for listener in config.listeners
    ]
    lines.extend(" ".join(service) for service in _SERVICES)
    return "\n".join(lines) + "\n"


def listener_options(config: MailServerConfig, listener: ListenerConfig) -> list[tuple[str, str]]:
    """The `-o` overrides that make one smtpd behave as the lab's listener."""
    options: list[tuple[str, str]] = []
    if listener.tls is ListenerTls.NONE:
        options.append(("smtpd_tls_security_level", "none"))
    elif listener.tls is ListenerTls.IMPLICIT:
        options += [("smtpd_tls_wrappermode", "yes"), ("smtpd_tls_security_level", "encrypt")]
    else:
        options.append(("smtpd_tls_security_level", "encrypt" if listener.require_tls else "may"))
    offered = listener.auth is not AuthPolicy.OFF
    options.append(("smtpd_sasl_auth_enable", "yes" if offered else "no"))
    if offered:
        tls_only = listener.auth_requires_tls and listener.tls is not ListenerTls.NONE
        options.append(("smtpd_tls_auth_only", "yes" if tls_only else "no"))
    if listener.auth is AuthPolicy.REQUIRED:
        # Refused at MAIL, as the lab's server does, rather than at RCPT (Postfix's default).
        restrictions = [*sender_restrictions(config)[:-1], "permit_sasl_authenticated", "reject"]
        options += [
            ("smtpd_delay_reject", "no"),
            ("smtpd_sender_restrictions", ",".join(restrictions)),
        ]
    return options
