"""The Postfix node program (`python -m lab.nodes relay|mx` with `software: postfix`): writes
the generated files, fills sasldb, starts postgrey when the node greylists, then becomes
`postfix start-fg`, whose log lines (`maillog_file = /dev/stdout`) are the container's log."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab.nodes.config import MailServerConfig
from lab.nodes.postfix.maincf import MAIL_UID, POSTGREY, mailbox_root
from lab.nodes.postfix.policy import refusals
from lab.nodes.postfix.setup import SASL_DB, SASL_PASSWORDS, PostfixSetup, postfix_setup

RESOLV_CONF = Path("/etc/resolv.conf")
POSTGREY_START = 20.0  # seconds for perl and its database to come up, on a busy host


def serve(config: MailServerConfig) -> int:
    """Configure and run Postfix in the foreground; returns only on failure (exit code)."""
    reasons = refusals(config)
    if reasons:
        sys.stderr.write(f"postfix: cannot run {config.name}: {'; '.join(reasons)}\n")
        return 2
    setup = postfix_setup(config)
    try:
        _write(config, setup)
        if setup.postgrey is not None:
            _start_postgrey(setup.postgrey)
    except (OSError, subprocess.CalledProcessError) as error:
        sys.stderr.write(f"postfix: setting up {config.name} failed: {error}\n")
        return 1
    sys.stdout.flush()
    os.execvp("postfix", ["postfix", "start-fg"])


def _write(config: MailServerConfig, setup: PostfixSetup) -> None:
    if config.resolver is not None and config.resolver.port == 53:
        # The lab DNS itself, not docker's embedded resolver in between: that one also
        # answers PTR questions for containers, which would pass every reverse-DNS check.
        RESOLV_CONF.write_text(f"nameserver {config.resolver.nameserver}\n", encoding="utf-8")
    for path, text in setup.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if path == SASL_PASSWORDS:
            os.chmod(path, 0o600)  # read by Postfix as root, before it drops privileges
    boxes = mailbox_root(config)
    boxes.mkdir(parents=True, exist_ok=True)
    os.chown(boxes, MAIL_UID, MAIL_UID)  # virtual(8) delivers as this uid
    for user in setup.sasl_users:
        subprocess.run(
            ["saslpasswd2", "-c", "-p", "-f", str(SASL_DB), "-u", user.realm, user.user],
            input=user.password.encode(),
            check=True,
        )
    if SASL_DB.exists():
        os.chmod(SASL_DB, 0o644)  # smtpd runs as postfix; the lab's passwords are no secret


def _start_postgrey(argv: list[str]) -> None:
    """Start the daemon and wait until it accepts, so that no RCPT meets a missing policy."""
    subprocess.run(argv, check=True)
    host, port = POSTGREY.removeprefix("inet:").split(":")
    deadline = time.monotonic() + POSTGREY_START
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
