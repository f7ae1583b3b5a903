"""VRFY, EXPN, ETRN and TURN asked of real Postfix and of the lab's server side by side, in
one docker lab, through Python's smtplib from the customer's side of the ISP: the codes,
enhanced codes and texts must be the same (the lab's server words them as Postfix with
`flavour: postfix`; `tests/nodes/test_commands.py` pins the lab's own answers)."""

from __future__ import annotations

import asyncio
import copy
import smtplib
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.catalog import load
from lab.runtime.base import running_lab
from lab.runtime.docker import DockerBackend

pytestmark = pytest.mark.docker

# Each pair: the same policy as Postfix (pf-*) and as the lab's server (lab-*).
_MX = {
    "kind": "mx",
    "network": "internet",
    "listeners": [{"port": 25, "tls": "none"}],
    "domains": ["example.org"],
    "mailboxes": {"bob@example.org": {}},
}
_BACKUP = {
    "kind": "relay",
    "network": "internet",
    "listeners": [{"port": 25, "tls": "none"}],
    "relay_domains": ["example.net"],
    "relay_recipients": ["carol@example.net"],
}
PAIRS: dict[str, dict[str, Any]] = {
    "open": {**_MX, "vrfy": "enabled"},
    "closed": {**_MX, "vrfy": "disabled"},
    "backup": _BACKUP,
}
WORLD: dict[str, Any] = {
    "title": "VRFY, EXPN, ETRN and TURN asked of Postfix and of the lab",
    "ticket": "Which commands does the server answer, and how?",
    "networks": {"office": {}, "internet": {}},
    "nodes": {
        "laptop": {
            "kind": "client",
            "network": "office",
            "settings": {
                "server": "pf-open.example.org",
                "from": "alice@example.com",
                "to": ["bob@example.org"],
            },
        },
        "isp": {"kind": "router", "inside": "office", "outside": "internet"},
        "dns": {"kind": "dns", "network": "internet", "zones": {"example.org": {"records": []}}},
    },
    "expect": {"outcome": "delivered"},
}
CONVERSATION = [
    ("VRFY", "bob@example.org"),
    ("VRFY", "<bob@example.org>"),
    ("VRFY", "nobody@example.org"),
    ("VRFY", "carol@example.net"),
    ("VRFY", "eve@example.net"),
    ("VRFY", "friend@elsewhere.example"),
    ("VRFY", ""),
    ("EXPN", "staff@example.org"),
    ("ETRN", "example.net"),
    ("ETRN", "@example.net"),
    ("ETRN", "example.org"),
    ("ETRN", ""),
    ("TURN", ""),
    ("ATRN", "example.net"),
]


def _world(tmp_path: Path) -> Any:
    world = copy.deepcopy(WORLD)
    for pair, node in PAIRS.items():
        for software in ("postfix", "lab"):
            name = f"{'pf' if software == 'postfix' else 'lab'}-{pair}"
            extra = {"flavour": "postfix"} if software == "lab" else {}
            world["nodes"][name] = {
                **copy.deepcopy(node),
                "software": software,
                "hostname": f"{name}.example.org",
                **extra,
            }
    path = tmp_path / "commands.yaml"
    path.write_text(yaml.safe_dump(world, sort_keys=False), encoding="utf-8")
    return load(str(path))


def _ask(port: int) -> list[tuple[int, str]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
        client.ehlo("client.example")
        # The commands beyond the transaction the server names in its EHLO reply.
        named = " ".join(k for k in client.esmtp_features if k in ("vrfy", "etrn", "expn"))
        answers = [client.docmd(verb, argument) for verb, argument in CONVERSATION]
        client.mail("alice@example.com")
        answers.append(client.docmd("ETRN", "example.net"))  # inside a transaction
    return [(code, text.decode()) for code, text in answers] + [(250, named)]


@pytest.fixture(scope="module")
def answers(
    docker_client: Any, node_image: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[tuple[int, str]]]:
    """Each mail node's answers to `CONVERSATION`, asked from the customer's side."""
    scenario = _world(tmp_path_factory.mktemp("commands"))
    backend = DockerBackend(docker_client, image=node_image)

    async def run() -> dict[str, list[tuple[int, str]]]:
        async with running_lab(scenario, backend) as lab:
            endpoints = await lab.publish_endpoints()
            ports = {e.node: e.port for e in endpoints if e.lab_port == 25}
            found = {}
            for node, port in ports.items():
                found[node] = await asyncio.to_thread(_ask, port)
            return found

    return asyncio.run(run())


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_the_lab_answers_as_postfix(answers: dict[str, list[tuple[int, str]]], pair: str) -> None:
    postfix, lab = answers[f"pf-{pair}"], answers[f"lab-{pair}"]
    asked = [
        *(f"{verb} {argument}" for verb, argument in CONVERSATION),
        "ETRN in MAIL",
        "EHLO keywords",
    ]
    assert list(zip(asked, lab, strict=True)) == list(zip(asked, postfix, strict=True))


def test_what_postfix_says(answers: dict[str, list[tuple[int, str]]]) -> None:
    """The texts the lab copies, as Postfix 3.7 gives them (pins what 'agree' means)."""
    replies = dict(zip([f"{v} {a}" for v, a in CONVERSATION], answers["pf-open"], strict=False))
    assert replies["VRFY bob@example.org"] == (252, "2.0.0 bob@example.org")
    assert replies["VRFY nobody@example.org"][0] == 550
    assert replies["VRFY nobody@example.org"][1].startswith("5.1.1 <nobody@example.org>")
    assert replies["EXPN staff@example.org"] == (500, "5.5.2 Error: command not recognized")
    assert replies["TURN "] == (500, "5.5.2 Error: command not recognized")
    assert answers["pf-open"][-1] == (250, "vrfy etrn")
    assert answers["pf-closed"][-1] == (250, "etrn")
    assert replies["ETRN example.org"] == (459, "<example.org>: service unavailable")
    assert answers["pf-closed"][0] == (502, "5.5.1 VRFY command is disabled")
    assert answers["pf-backup"][CONVERSATION.index(("ETRN", "example.net"))] == (
        250,
        "Queuing started",
    )
