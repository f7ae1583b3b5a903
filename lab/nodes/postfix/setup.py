"""Everything a Postfix node needs, generated without I/O: main.cf, master.cf, the lookup
tables (mailboxes, transports, sender logins), the Cyrus SASL settings and sasldb entries,
and postgrey's command line when the node greylists."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lab.addresses import domain_of
from lab.nodes.config import MailServerConfig
from lab.nodes.mailserver.store import mailbox_dirname
from lab.nodes.postfix.maincf import ETC, POSTGREY, main_cf
from lab.nodes.postfix.master import master_cf

SASL_DB = Path("/etc/sasldb2")
SASL_PASSWORDS = ETC / "sasl_passwd"  # the relay's login at its smart host: written 0600


@dataclass(frozen=True)
class SaslUser:
    """One sasldb entry: Cyrus splits a login "user@realm"; a bare one gets the hostname."""

    user: str
    realm: str
    password: str


@dataclass(frozen=True)
class PostfixSetup:
    """The files to write (absolute paths), SASL users, and postgrey's argv (or None)."""

    files: dict[Path, str]
    sasl_users: list[SaslUser] = field(default_factory=list)
    postgrey: list[str] | None = None


def postfix_setup(config: MailServerConfig) -> PostfixSetup:
    """The Postfix node standing for `config`."""
    files = {
        ETC / "main.cf": main_cf(config),
        ETC / "master.cf": master_cf(config),
        ETC / "vmailbox": _table(
            (address, mailbox_dirname(address) + "/") for address in config.mailboxes
        ),
        ETC / "transport": _table(
            (_transport_key(pattern), f"smtp:[{c.to.host}]:{c.to.port}")
            for c in config.routing.connectors
            for pattern in c.domains
        ),
        ETC / "sender_logins": _table((login, login) for login in config.users),
        ETC / "relay_recipients": _table(
            (address, "OK") for address in config.relay_recipients or []
        ),
        ETC / "sasl" / "smtpd.conf": (
            "pwcheck_method: auxprop\n"
            "auxprop_plugin: sasldb\n"
            f"mech_list: {' '.join(str(m) for m in config.auth_mechanisms)}\n"
            f"sasldb_path: {SASL_DB}\n"
        ),
    }
    smarthost = config.routing.smarthost
    if smarthost is not None and smarthost.user is not None:
        key = f"[{smarthost.host}]:{smarthost.port}"  # as relayhost is written: no MX lookup
        files[SASL_PASSWORDS] = f"{key} {smarthost.user}:{smarthost.password or ''}\n"
    users = [_sasl_user(login, secret, config.hostname) for login, secret in config.users.items()]
    return PostfixSetup(files=files, sasl_users=users, postgrey=_postgrey(config))


def _table(entries: Iterable[tuple[str, str]]) -> str:
    return "".join(f"{key} {value}\n" for key, value in entries)


def _transport_key(pattern: str) -> str:
    """ "*.net" matches below .net, as Postfix's ".net" does; a plain domain itself."""
    return pattern[1:] if pattern.startswith("*.") else pattern


def _sasl_user(login: str, password: str, hostname: str) -> SaslUser:
    if "@" in login:
        user = login.rpartition("@")[0]
        return SaslUser(user, domain_of(login), password)
    return SaslUser(login, hostname, password)


def _postgrey(config: MailServerConfig) -> list[str] | None:
    if config.greylist is None:
        return None
    host, port = POSTGREY.removeprefix("inet:").split(":")
    return [
        "postgrey",
        f"--inet={host}:{port}",
        f"--delay={max(1, math.ceil(config.greylist.delay))}",
        "--daemonize",
        "--pidfile=/run/postgrey.pid",
    ]
