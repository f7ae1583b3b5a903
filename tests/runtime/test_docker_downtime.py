"""A server that comes back (`down: {until: ...}`) on real containers: its program runs
behind a firewall that drops everything, which a shell forked before NET_ADMIN was dropped
opens when the downtime ends."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.runtime.docker import DockerBackend, DockerLab
from lab.scenario.loader import load_scenario
from tests.runtime.conftest import labelled_leftovers

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).parents[2] / "scenarios"
POLL = 0.25


@pytest.fixture(scope="module")
def lab(docker_client: Any, node_image: str) -> Iterator[DockerLab]:
    """backup-mx-queues: the primary MX is off for its first 15 lab seconds."""
    backend = DockerBackend(docker_client, image=node_image)
    running = backend.up_sync(backend.plan(load_scenario(SCENARIOS / "backup-mx-queues.yaml")))
    try:
        yield running
    finally:
        running.down_sync()
        assert labelled_leftovers(docker_client, running.id) == []


def input_policy(lab: DockerLab, node: str) -> str:
    code, output = lab.exec(node, ["iptables", "-w", "-S", "INPUT"])
    assert code == 0, output
    return output.splitlines()[0].strip()


def test_the_primary_is_firewalled_then_opens_when_its_downtime_ends(lab: DockerLab) -> None:
    back_after = lab.topology.nodes["mx"].back_after
    assert back_after is not None
    assert input_policy(lab, "mx") == "-P INPUT DROP"
    # The backup MX, on from the start, has no firewall.
    assert input_policy(lab, "mx2") == "-P INPUT ACCEPT"
    deadline = time.monotonic() + back_after + 10
    while input_policy(lab, "mx") != "-P INPUT ACCEPT":
        assert time.monotonic() < deadline, "the firewall never opened"
        time.sleep(POLL)
