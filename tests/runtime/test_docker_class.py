"""A class on one engine: labs started together, on a real engine.

Labs planned at the same moment pick the same free subnets; brought up
together they must still end on disjoint subnets, each with every node
running, and leave nothing behind. A node behind a router starts with the
rest of the lab but runs its program only once the router's rules are in.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lab.runtime.docker import DockerBackend, DockerLab
from lab.runtime.docker.commands import customer_gateways
from lab.runtime.docker.files import routes_set_file
from lab.runtime.docker.namespaces import CAN_ENTER_NAMESPACES, runs_in
from lab.scenario.loader import load_scenario
from tests.runtime.conftest import labelled_leftovers, own_routes
from tests.runtime.test_docker_network import SCENARIO, backend_for

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
CLASS_SIZE = 3


async def test_labs_planned_together_come_up_on_subnets_apart(
    docker_client: Any, node_image: str
) -> None:
    routes_before = own_routes(docker_client)
    backend = backend_for(docker_client, node_image)
    scenario = load_scenario(SCENARIO)
    # Planned before any exists, as a room of trainees opening a case at once: the same
    # subnets each time.
    plans = [backend.plan(scenario) for _ in range(CLASS_SIZE)]
    assert len({tuple(n.subnet for n in p.networks.values()) for p in plans}) == 1
    outcomes = await asyncio.gather(*(backend.up(p) for p in plans), return_exceptions=True)
    labs: list[DockerLab] = [lab for lab in outcomes if isinstance(lab, DockerLab)]
    try:
        assert len(labs) == CLASS_SIZE, [o for o in outcomes if not isinstance(o, DockerLab)]
        subnets = [network.subnet for lab in labs for network in lab.topology.networks.values()]
        assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :]), (
            subnets
        )
        for lab in labs:
            for node, container in lab.containers.items():
                assert lab.state(node)["Running"], (lab.id, node)
                if node != "isp":  # the router runs no init script
                    assert routes_set_file(node, lab.host_dir).exists(), (lab.id, node)
                if CAN_ENTER_NAMESPACES:
                    assert runs_in(lab.pid(node), container)
                    others = [c for n, c in lab.containers.items() if n != node]
                    assert not runs_in(lab.pid(node), others[0])
    finally:
        await asyncio.gather(*(lab.down() for lab in labs))
    for lab in labs:
        assert labelled_leftovers(docker_client, lab.id) == []
    assert own_routes(docker_client) == routes_before


def test_a_program_behind_the_router_starts_once_the_router_is_ready(
    docker_client: Any, node_image: str
) -> None:
    # isp-outage: the customer's own DNS server sits behind the ISP's router.
    backend = DockerBackend(docker_client, image=node_image)
    with backend.up_sync(backend.plan(load_scenario(SCENARIOS / "isp-outage.yaml"))) as lab:
        assert "dns" in customer_gateways(lab.topology)
        router_ready = _first(lab, "isp", "router-ready")
        dns_started = min(event["ts"] for event in lab.events("dns"))
        assert dns_started >= router_ready


def _first(lab: DockerLab, node: str, event: str) -> float:
    for record in lab.events(node):
        if record.get("event") == event:
            return float(record["ts"])
    raise AssertionError(f"no {event} in {node}: {json.dumps(lab.events(node))}")
