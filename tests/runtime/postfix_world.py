"""A small world around one real Postfix server, which each real-MTA test breaks one way."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from lab.catalog import load
from lab.scenario.model import Scenario

# The customer (alice@example.com) sends from the office, through its ISP, to
# mail.example.org: real Postfix, the MX of example.org, with one mailbox.
BASE_WORLD: dict[str, Any] = {
    "title": "One Postfix server, broken one way",
    "ticket": "Mail to example.org does not go through.",
    "networks": {"office": {}, "internet": {}},
    "nodes": {
        "laptop": {
            "kind": "client",
            "network": "office",
            "hostname": "pc.office.example",
            "settings": {
                "server": "mail.example.org",
                "port": 25,
                "security": "none",
                "from": "alice@example.com",
                "to": ["bob@example.org"],
            },
        },
        "isp": {"kind": "router", "inside": "office", "outside": "internet"},
        "dns": {
            "kind": "dns",
            "network": "internet",
            "zones": {
                "example.org": {"records": [{"type": "MX", "value": "10 mail.example.org."}]},
                "example.com": {"records": [{"type": "MX", "value": "10 mail.example.org."}]},
            },
        },
        "mail": {
            "kind": "mx",
            "software": "postfix",
            "network": "internet",
            "hostname": "mail.example.org",
            "listeners": [{"port": 25, "tls": "starttls"}],
            "domains": ["example.org"],
            "mailboxes": {"bob@example.org": {}},
        },
    },
    "expect": {"outcome": "delivered"},
}


def broken_world(
    tmp_path: Path,
    name: str,
    *,
    mail: dict[str, Any] | None = None,
    router: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Scenario:
    """`BASE_WORLD` with the mail server, router and mail settings changed as given."""
    world = copy.deepcopy(BASE_WORLD)
    nodes = world["nodes"]
    nodes["mail"].update(mail or {})
    nodes["isp"].update(router or {})
    nodes["laptop"]["settings"].update(settings or {})
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(world, sort_keys=False), encoding="utf-8")
    return load(str(path))
