"""The engine against real Postfix: one Postfix server per test, broken one way, diagnosed
as `smtplab diagnose --server` does (a `ServerTarget`: no scenario, no lab knowledge), from
the customer's computer through its ISP's router, and the verdict names the catalog entry.

Each case records Postfix's own reply (the first failing reply of the walk) so that a
wrong verdict shows what the server said. Cases whose verdict the engine still gets wrong
are strict xfails: they fail loudly once the engine is mended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.diagnosis.engine import run_diagnosis
from lab.diagnosis.target import ServerTarget, nameserver_resolver
from lab.runtime.base import running_lab
from lab.runtime.docker import DockerBackend, DockerLab
from tests.runtime.postfix_world import broken_world

pytestmark = pytest.mark.docker

LOGIN = {"user": "alice@example.com", "password": "correct-horse"}
SUBMISSION = {"port": 587, "tls": "starttls", "auth": "offered"}


@dataclass(frozen=True)
class Fault:
    """One way to break the Postfix server (or the path to it) and the verdict it deserves."""

    id: str
    entry: str
    mail: dict[str, Any] = field(default_factory=dict)
    router: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    crowd: bool = False  # another connection stays open while the engine probes
    engine_wrong: str | None = None  # why the engine's verdict is still wrong, if it is


FAULTS = [
    Fault(
        "relay-denied-554",
        "relay-denied",
        settings={"to": ["carol@example.net"]},
    ),
    Fault(
        "relay-denied-454",
        "relay-denied",
        mail={
            "postfix": {
                "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                "defer_unauth_destination"
            }
        },
        settings={"to": ["carol@example.net"]},
    ),
    Fault("unknown-user", "unknown-user", settings={"to": ["nobody@example.org"]}),
    Fault(
        "too-large-with-size",
        "message-too-large",
        mail={"max_size": "20 KB"},
        settings={"size": "100 KB"},
    ),
    Fault(
        "too-large-without-size",
        "message-too-large",
        mail={"max_size": "20 KB", "postfix": {"smtpd_discard_ehlo_keywords": "size"}},
        settings={"size": "100 KB"},
    ),
    Fault(
        "starttls-required",
        "tls-required",
        mail={"listeners": [{"port": 25, "tls": "starttls", "require_tls": True}]},
    ),
    Fault(
        "implicit-tls-on-465",
        "wrong-tls-mode",
        mail={"listeners": [{"port": 465, "tls": "implicit"}]},
        settings={"port": 465, "security": "starttls", "timeout": 2.0},
    ),
    Fault(
        "auth-required-at-mail",
        "auth-required",
        mail={
            "listeners": [{**SUBMISSION, "auth": "required"}],
            "users": {LOGIN["user"]: LOGIN["password"]},
        },
        settings={"port": 587, "security": "starttls"},
    ),
    Fault(
        "auth-required-at-rcpt",
        "auth-required",
        mail={
            "listeners": [SUBMISSION],
            "users": {LOGIN["user"]: LOGIN["password"]},
            "postfix": {"smtpd_relay_restrictions": "permit_sasl_authenticated, reject"},
        },
        settings={"port": 587, "security": "starttls"},
    ),
    Fault(
        "bad-password",
        "auth-bad-credentials",
        mail={"listeners": [SUBMISSION], "users": {LOGIN["user"]: LOGIN["password"]}},
        settings={
            "port": 587,
            "security": "starttls",
            "auth": {"user": LOGIN["user"], "password": "wrong-horse"},
        },
    ),
    Fault(
        "mechanism-not-offered",
        "auth-mechanism-mismatch",
        mail={
            "listeners": [SUBMISSION],
            "users": {LOGIN["user"]: LOGIN["password"]},
            "auth_mechanisms": ["PLAIN"],
        },
        settings={"port": 587, "security": "starttls", "auth": {**LOGIN, "mechanism": "CRAM-MD5"}},
    ),
    Fault(
        "connection-count-limit",
        "connection-limit",
        mail={"postfix": {"smtpd_client_connection_count_limit": "1"}},
        crowd=True,
    ),
    Fault("greylisting", "greylisting", mail={"greylist": {"delay": "1h"}}),
    Fault(
        "sender-domain-unknown",
        "sender-domain-rejected",
        mail={"reject_unknown_sender_domain": True},
        settings={"from": "alice@nowhere.example"},
    ),
    Fault(
        "client-rejected",
        "dnsbl-listed",
        mail={"dnsbl": ["zen.dnsbl.example"]},
        router={"listed_on": ["zen.dnsbl.example"]},
    ),
    Fault(
        "port-dropped-others-refused",
        "port-filtered",
        mail={"listeners": [{"port": 25}, SUBMISSION, {"port": 465, "tls": "implicit"}]},
        router={"ports": {25: "drop"}, "default": "reject"},
        settings={"timeout": 2.0},
    ),
    Fault("port-refused", "connection-refused", router={"ports": {25: "reject"}}),
]


def _param(fault: Fault) -> Any:
    marks = (
        [pytest.mark.xfail(strict=True, reason=f"engine: {fault.engine_wrong}")]
        if fault.engine_wrong
        else []
    )
    return pytest.param(fault, id=fault.id, marks=marks)


@contextlib.asynccontextmanager
async def crowded(lab: DockerLab, fault: Fault) -> AsyncIterator[None]:
    """One more session from the customer's address, greeted and held open, if asked."""
    if not fault.crowd:
        yield
        return
    server = lab.topology.nodes["mail"].address
    reader, writer = await lab.connector_for("laptop").open_connection(str(server), 25, timeout=5.0)
    await asyncio.wait_for(reader.readline(), 5.0)
    try:
        yield
    finally:
        writer.close()


def first_failure(steps: list[Any]) -> str:
    """The server's first 4xx/5xx reply in the walk's transcripts (what Postfix said)."""
    for step in steps:
        for line in getattr(step, "transcript", None) or []:
            text = str(getattr(line, "text", line))
            if text[:1] in "45" and text[:3].isdigit():
                return text
    return ""


@pytest.mark.parametrize("fault", [_param(fault) for fault in FAULTS])
def test_diagnose_server_names_the_fault_of_real_postfix(
    fault: Fault, tmp_path: Path, docker_client: Any, node_image: str
) -> None:
    scenario = broken_world(
        tmp_path, fault.id, mail=fault.mail, router=fault.router, settings=fault.settings
    )
    backend = DockerBackend(docker_client, image=node_image)

    async def diagnose() -> tuple[list[Any], Any]:
        async with running_lab(scenario, backend) as lab:
            assert isinstance(lab, DockerLab)
            dns = lab.topology.dns
            assert dns is not None
            # As `smtplab diagnose --server mail.example.org --ca-file …` from the office.
            target = ServerTarget(
                resolver=nameserver_resolver(str(dns.address)),
                connector=lab.connector_for("laptop"),
                ca_file=lab.ca_file,
                helo="pc.office.example",
                label="server mail.example.org",
            )
            async with crowded(lab, fault):
                return await run_diagnosis(target, scenario.client[1].settings)

    steps, diagnosis = asyncio.run(diagnose())
    said = first_failure(steps)
    print(f"{fault.id}: Postfix said {said!r}; verdict {diagnosis.entry} ({diagnosis.cause})")
    assert diagnosis.entry == fault.entry, (said, diagnosis.cause)
