"""The office's colleagues (`colleagues:` on a scenario's client): sessions held open from
the customer's own place behind the ISP's NAT, so that the provider counts them against
the office's one public address. On both backends: the provider's per-address limit
refuses the customer's session at the greeting, naming the router's outside address, and
the same mail program delivers once the colleagues hang up."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from lab.errors import LabStartError
from lab.runs import run_once
from lab.runtime.base import Backend, running_lab
from lab.runtime.colleagues import ColleaguesError
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.scenario.model import Outcome, Scenario

SCENARIOS = Path(__file__).parents[2] / "scenarios"
OFFICE = "office-nat-connection-limit"


def _office() -> Scenario:
    return load_scenario(SCENARIOS / f"{OFFICE}.yaml")


async def _refused_then_delivered(backend: Backend) -> None:
    async with running_lab(_office(), backend) as lab:
        colleagues = getattr(lab, "colleagues", None)
        assert colleagues is not None
        assert len(colleagues.greetings) == 3
        assert all(greeting.startswith("220 ") for greeting in colleagues.greetings)
        nat = str(lab.topology.nodes["isp"].addresses["internet"])
        report = await run_once(lab)
        assert (report.outcome, report.stage, report.code, report.enhanced) == (
            Outcome.REJECTED,
            "banner",
            421,
            "4.7.0",
        ), report.text
        # the provider saw the office's one public address, not the laptop's own
        assert f"too many connections from {nat}" in report.text
        colleagues.close()  # the colleagues go home: the same settings now deliver
        for _ in range(50):
            report = await run_once(lab)
            if report.outcome is not Outcome.REJECTED:
                break
            await asyncio.sleep(0.1)
        assert report.outcome is Outcome.DELIVERED, report.text


def test_colleagues_fill_the_per_address_limit_locally() -> None:
    asyncio.run(_refused_then_delivered(LocalBackend()))


def test_colleagues_that_cannot_connect_stop_the_lab_in_one_line() -> None:
    scenario = _office()
    client = scenario.nodes["laptop"]
    broken = client.model_copy(
        update={"colleagues": client.colleagues.model_copy(update={"port": 2526})}  # type: ignore[union-attr]
    )
    scenario = scenario.model_copy(update={"nodes": {**scenario.nodes, "laptop": broken}})

    async def start() -> None:
        async with running_lab(scenario, LocalBackend()):
            raise AssertionError("the lab came up without its colleagues")

    with pytest.raises(ColleaguesError) as raised:
        asyncio.run(start())
    assert isinstance(raised.value, LabStartError)
    message = str(raised.value)
    assert "\n" not in message
    assert "session 1 to mail.example.com:2526 failed" in message


@pytest.mark.docker
def test_colleagues_fill_the_per_address_limit_on_docker(
    docker_client: Any, node_image: str
) -> None:
    from lab.runtime.docker import DockerBackend

    asyncio.run(_refused_then_delivered(DockerBackend(docker_client, image=node_image)))
