"""no-mx-a-fallback, the success path of RFC 5321 §5.1 on both backends: example.net has no
MX, so the relay routes to the domain's own address (the implicit MX), the relay's log says
so, and the message lands in bob's mailbox on the server at that address."""

from __future__ import annotations

import asyncio
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest

from lab.nodes.resolver import NoRecords
from lab.runs import Fate, run_once
from lab.runtime.base import Backend, running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.scenario.model import Outcome

SCENARIO = Path(__file__).parents[2] / "scenarios" / "no-mx-a-fallback.yaml"


async def _lands_at_the_domains_own_address(backend: Backend) -> None:
    async with running_lab(load_scenario(SCENARIO), backend) as lab:
        [address] = await lab.resolve("relay", "example.net")
        assert address == str(lab.topology.nodes["mx"].address)
        # The records as published, the same on both backends: no MX (the implicit MX is
        # the relay's and the diagnosis's conclusion, not the DNS's answer).
        with pytest.raises(NoRecords):
            await lab.resolve("relay", "example.net", "MX")
        report = await run_once(lab)
        assert report.outcome is Outcome.DELIVERED, report.text
        [fate] = report.recipients
        assert (fate.address, fate.fate) == ("bob@example.net", Fate.DELIVERED)
        [stored] = lab.mailbox("mx", "bob@example.net")
        assert message_from_bytes(stored)["To"] == "bob@example.net"
        routes = [event for event in lab.events("relay") if event.get("event") == "route"]
        assert [(route["domain"], route["method"]) for route in routes] == [
            ("example.net", "implicit-mx")
        ]
        assert routes[0]["failure"] is None
        assert any(address in hop for hop in routes[0]["hops"])


def test_implicit_mx_locally() -> None:
    asyncio.run(_lands_at_the_domains_own_address(LocalBackend()))


@pytest.mark.docker
def test_implicit_mx_on_docker(docker_client: Any, node_image: str) -> None:
    from lab.runtime.docker import DockerBackend

    backend = DockerBackend(docker_client, image=node_image)
    asyncio.run(_lands_at_the_domains_own_address(backend))
