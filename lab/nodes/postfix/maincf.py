"""main.cf of a Postfix node: who may relay, what is checked at RCPT, limits, TLS files,
virtual Maildir delivery where the lab reads mailboxes, the relay's next hops and queue."""

from __future__ import annotations

import math
from pathlib import Path

from lab.nodes.config import MailServerConfig
from lab.scenario.vocabulary import SendAsPolicy, VrfyPolicy

ETC = Path("/etc/postfix")
POSTGREY = "inet:127.0.0.1:10023"
# Owner of delivered mail: any unprivileged uid works for virtual(8); no passwd entry needed.
MAIL_UID = 5000


def postfix_time(seconds: float) -> str:
    """Lab seconds as a Postfix time value: whole seconds, at least one."""
    return f"{max(1, math.ceil(seconds))}s"


def mailbox_root(config: MailServerConfig) -> Path:
    """Where the lab reads this node's Maildirs (`lab.nodes.mailserver.store`)."""
    return config.data_dir / "mailboxes"


def main_cf(config: MailServerConfig) -> str:
    """The whole main.cf, as `key = value` lines."""
    settings: dict[str, str] = {
        "compatibility_level": "3.6",
        "myhostname": config.hostname,
        "mydestination": "",
        "inet_interfaces": "all",
        "inet_protocols": "ipv4",
        # Postfix's own log lines go to the container log: `smtplab logs` shows them.
        "maillog_file": "/dev/stdout",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "biff": "no",
        "append_dot_mydomain": "no",
        "smtpd_banner": "$myhostname ESMTP Postfix",
        "mynetworks": " ".join(["127.0.0.0/8", *config.permit_relay.networks]),
        # Limits apply to the trusted networks as well, as on the lab's own server.
        "smtpd_client_event_limit_exceptions": "",
        "message_size_limit": str(config.max_size or 0),  # 0: no limit (SIZE without a number)
        "mailbox_size_limit": "0",
        "virtual_mailbox_limit": "0",
        "virtual_mailbox_domains": " ".join(config.domains),
        "virtual_mailbox_base": str(mailbox_root(config)),
        "virtual_mailbox_maps": f"texthash:{ETC / 'vmailbox'}",
        # virtual(8) looks "bob+tag@" up as "bob@" (empty: no subaddressing).
        "recipient_delimiter": config.recipient_delimiter or "",
        "virtual_uid_maps": f"static:{MAIL_UID}",
        "virtual_gid_maps": f"static:{MAIL_UID}",
        "smtpd_relay_restrictions": ", ".join(_relay_restrictions(config)),
        "smtpd_recipient_restrictions": ", ".join(_recipient_restrictions(config)),
        "smtpd_sender_restrictions": ", ".join(sender_restrictions(config)),
        "smtpd_sasl_type": "cyrus",
        "smtpd_sasl_path": "smtpd",
        "cyrus_sasl_config_path": str(ETC / "sasl"),
        "smtpd_sasl_local_domain": config.hostname,
        "smtpd_sasl_security_options": "noanonymous",
        "smtpd_tls_security_level": "may",
        "smtp_tls_security_level": "may",
        # The lab's relay tries a name's addresses in the order DNS gives them (a failover
        # to the second bridgehead is then the same in every run); Postfix shuffles them.
        "smtp_randomize_addresses": "no",
        "smtp_connect_timeout": postfix_time(config.queue.connect_timeout if config.queue else 2),
        "unknown_client_reject_code": str(config.checks.ptr_reject_code),
        # Sessions at once from one client address (anvil): the office behind one NAT.
        "smtpd_client_connection_count_limit": str(config.limits.per_client),
        "disable_vrfy_command": "yes" if config.vrfy is VrfyPolicy.DISABLED else "no",
    }
    if config.tls is not None:
        settings["smtpd_tls_cert_file"] = str(config.tls.cert_file)
        settings["smtpd_tls_key_file"] = str(config.tls.key_file)
    if config.max_recipients is not None:
        settings["smtpd_recipient_limit"] = str(config.max_recipients)
    if config.rate_limit is not None:
        settings["smtpd_client_connection_rate_limit"] = str(config.rate_limit.connections)
        settings["anvil_rate_time_unit"] = postfix_time(config.rate_limit.per)
    if config.send_as is SendAsPolicy.ENFORCE:
        settings["smtpd_sender_login_maps"] = f"texthash:{ETC / 'sender_logins'}"
    if config.relay_domains:
        settings["relay_domains"] = " ".join(config.relay_domains)
    if config.relay_recipients is not None:
        settings["relay_recipient_maps"] = f"texthash:{ETC / 'relay_recipients'}"
    settings.update(_routing(config))
    settings.update(_queue(config))
    settings.update(config.postfix)  # the scenario's own words win
    return "".join(f"{key} = {value}\n" for key, value in settings.items())


def _relay_restrictions(config: MailServerConfig) -> list[str]:
    permits = ["permit_mynetworks"]
    if config.permit_relay.authenticated:
        permits.append("permit_sasl_authenticated")
    return [*permits, "reject_unauth_destination"]


def _recipient_restrictions(config: MailServerConfig) -> list[str]:
    """Checks of the client and sender, for sessions neither trusted nor authenticated."""
    checks = config.checks
    found = []
    if checks.require_ptr:
        found.append("reject_unknown_client_hostname")
    found.extend(f"reject_rbl_client {zone.rstrip('.')}" for zone in checks.dnsbl)
    if checks.reject_unknown_sender_domain:
        found.append("reject_unknown_sender_domain")
    if config.greylist is not None:
        found.append(f"check_policy_service {POSTGREY}")
    if not found:
        return ["permit"]
    return ["permit_mynetworks", "permit_sasl_authenticated", *found, "permit"]


def sender_restrictions(config: MailServerConfig) -> list[str]:
    """Checks of the sender at MAIL, ending in `permit`."""
    if config.send_as is SendAsPolicy.ENFORCE:
        return ["reject_authenticated_sender_login_mismatch", "permit"]
    return ["permit"]


def _routing(config: MailServerConfig) -> dict[str, str]:
    found = {}
    if config.routing.smarthost is not None:
        hop = config.routing.smarthost
        found["relayhost"] = f"[{hop.host}]:{hop.port}"
        if hop.user is not None:
            # The login to the smart host; PLAIN/LOGIN need a mechanism Cyrus will use
            # over plaintext too (the default refuses them without TLS).
            found["smtp_sasl_auth_enable"] = "yes"
            found["smtp_sasl_password_maps"] = f"texthash:{ETC / 'sasl_passwd'}"
            found["smtp_sasl_security_options"] = "noanonymous"
            found["smtp_sasl_tls_security_options"] = "noanonymous"
    if config.routing.connectors:
        found["transport_maps"] = f"texthash:{ETC / 'transport'}"
    return found


def _queue(config: MailServerConfig) -> dict[str, str]:
    """The relay's retry schedule and lifetime (lab seconds, whole seconds for Postfix)."""
    if config.queue is None:
        return {}
    retry = config.queue.retry or [1.0]
    # Postfix notices that a message expired only when it next leaves the deferred queue,
    # after a failed attempt (up to a connect timeout): start that much early, so that
    # the bounce lands about when the lab's own queue would send it.
    lifetime = postfix_time(config.queue.lifetime - config.queue.connect_timeout)
    return {
        "queue_run_delay": postfix_time(min(retry)),
        "minimal_backoff_time": postfix_time(min(retry)),
        "maximal_backoff_time": postfix_time(max(retry)),
        "maximal_queue_lifetime": lifetime,
        "bounce_queue_lifetime": lifetime,
    }
