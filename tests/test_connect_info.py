"""`smtplab up`'s connection facts on a real local lab: host names, TLS, CA, DNS, swaks."""

from __future__ import annotations

import shlex

from lab.catalog import load
from lab.connect_info import lab_access
from lab.runtime.local import LocalBackend


async def test_lab_access_names_what_a_client_needs() -> None:
    backend = LocalBackend()
    lab = await backend.up(backend.plan(load("blocked-port-25")))
    try:
        endpoints = await lab.publish_endpoints()
        access = lab_access(lab.id, lab.backend, lab.topology, endpoints, lab.ca_file)
    finally:
        await lab.down()
    assert access.ca_file is not None
    assert access.ca_file.endswith(".pem")
    assert access.dns is not None
    assert access.dns.endswith(":53")
    submission = next(s for s in access.servers if s.tls == "starttls" and s.auth_required)
    assert submission.hostname == "mail.example.com"
    words = shlex.split(submission.swaks)
    assert words[:2] == ["swaks", "--server"]
    assert words[words.index("--port") + 1] == submission.connect.rsplit(":", 1)[1]
    assert "--tls" in words
    assert words[words.index("--tls-sni") + 1] == "mail.example.com"
    assert words[words.index("--tls-ca-path") + 1] == access.ca_file
    implicit = [s for s in access.servers if s.tls == "implicit"]
    assert all("--tls-on-connect" in s.swaks for s in implicit)
