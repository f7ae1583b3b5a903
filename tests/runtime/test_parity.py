"""Every catalog scenario on real containers: `verify` passes, the result is the local
backend's, and no node has a route out of the lab.

The docker labs run as one batch (`CONCURRENCY` at a time: most of a run is
waiting on timeouts and queue retries, and two cores are busy enough with
two labs and their diagnosis labs); each test then asserts on its scenario's
part. Isolation is proven by asking each container's kernel how it would
route to outside addresses (`ip route get`), never by sending to them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass
from typing import Any

import pytest

from lab.catalog import load_catalog
from lab.runtime.base import running_lab
from lab.runtime.docker import DockerBackend, DockerLab, customer_gateways
from lab.runtime.local import LocalBackend
from lab.scenario.model import Scenario
from lab.verify import Verification, verify

pytestmark = pytest.mark.docker

CONCURRENCY = 2
# 192.0.2.1 is this host's own LAN gateway on some CI machines; 8.8.8.8 is the internet.
# Both are only ever looked up in routing tables here.
OUTSIDE = ("192.0.2.1", "8.8.8.8")
ROUTE_PROBE = 'for a in "$@"; do echo "== $a"; ip -4 route get "$a" 2>&1; echo "rc=$?"; done'

SCENARIOS: list[Scenario] = load_catalog()[0]
IDS = [scenario.id for scenario in SCENARIOS]


@dataclass(frozen=True)
class DockerRun:
    """One scenario's verification on docker and each node's answer to `ip route get`."""

    verification: Verification
    routes: dict[str, dict[str, tuple[int, str]]]  # node -> address -> (exit code, output)
    customer_routers: dict[str, str]  # node behind a router -> the router's inside address


def route_answers(lab: DockerLab) -> dict[str, dict[str, tuple[int, str]]]:
    """`ip route get` for each outside address, in every container of the lab."""

    def ask(node: str) -> dict[str, tuple[int, str]]:
        _, output = lab.exec(node, ["sh", "-c", ROUTE_PROBE, "route-probe", *OUTSIDE])
        answers: dict[str, tuple[int, str]] = {}
        for block in output.split("== ")[1:]:
            address, _, rest = block.partition("\n")
            text, _, code = rest.rpartition("rc=")
            answers[address.strip()] = (int(code.strip()), text.strip())
        return answers

    nodes = list(lab.containers)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(nodes, pool.map(ask, nodes), strict=True))


@pytest.fixture(scope="module")
def docker_runs(docker_client: Any, node_image: str) -> dict[str, DockerRun | BaseException]:
    """Every scenario verified on docker (diagnosis included), `CONCURRENCY` labs at a time."""
    backend = DockerBackend(docker_client, image=node_image)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(scenario: Scenario) -> DockerRun:
        async with gate, running_lab(scenario, backend) as lab:
            assert isinstance(lab, DockerLab)
            verification = await verify(lab, backend=backend)
            routes = await asyncio.to_thread(route_answers, lab)
            routers = {
                name: str(address) for name, address in customer_gateways(lab.topology).items()
            }
            return DockerRun(verification, routes, routers)

    async def everything() -> list[DockerRun | BaseException]:
        return await asyncio.gather(*(one(s) for s in SCENARIOS), return_exceptions=True)

    return dict(zip(IDS, asyncio.run(everything()), strict=True))


@pytest.fixture(scope="module")
def local_runs() -> dict[str, Verification]:
    """Every scenario verified on the local backend (well under a second each, but waits)."""
    backend = LocalBackend()

    async def one(scenario: Scenario) -> Verification:
        async with running_lab(scenario, backend) as lab:
            return await verify(lab, backend=backend)

    async def everything() -> list[Verification]:
        return await asyncio.gather(*(one(s) for s in SCENARIOS))

    return dict(zip(IDS, asyncio.run(everything()), strict=True))


def docker_run(runs: dict[str, DockerRun | BaseException], scenario: str) -> DockerRun:
    run = runs[scenario]
    if isinstance(run, BaseException):
        raise run
    return run


def observed(verification: Verification) -> dict[str, Any]:
    """What parity means: the same outcome, stage and codes, for the run and the fix, and
    the same diagnosis."""
    runs = {"run": verification.report, "fix": verification.fix_report}
    seen: dict[str, Any] = {
        f"{name}.{key}": getattr(report, key) if report is not None else None
        for name, report in runs.items()
        for key in ("outcome", "stage", "code", "enhanced")
    }
    seen["diagnosis"] = verification.diagnosis.entry if verification.diagnosis else None
    return seen


@pytest.mark.parametrize("scenario", IDS)
def test_verify_passes_on_docker(docker_runs: dict[str, Any], scenario: str) -> None:
    verification = docker_run(docker_runs, scenario).verification
    assert verification.mismatches == []


@pytest.mark.parametrize("scenario", IDS)
def test_same_result_as_the_local_backend(
    docker_runs: dict[str, Any], local_runs: dict[str, Verification], scenario: str
) -> None:
    docker = docker_run(docker_runs, scenario).verification
    assert observed(docker) == observed(local_runs[scenario])
    assert docker.report.backend == "docker"


@pytest.mark.parametrize("scenario", IDS)
def test_no_node_has_a_route_out_of_the_lab(docker_runs: dict[str, Any], scenario: str) -> None:
    run = docker_run(docker_runs, scenario)
    assert run.routes, "no container was inspected"
    for node, answers in run.routes.items():
        assert set(answers) == set(OUTSIDE), (node, answers)
        for address, (code, output) in answers.items():
            if node in run.customer_routers:
                # The customer's side goes to its router and no further: the router
                # itself (checked as one of the nodes) has no route out at all.
                assert code == 0, (node, address, output)
                assert f"via {run.customer_routers[node]} " in output, (node, address, output)
            else:
                assert code != 0, (node, address, output)
                assert "unreachable" in output.lower(), (node, address, output)
