"""What crosses a router, on both backends: the customer's ISP dropping port 25 shows SYNs
that nobody answers (docker: real packets from tcpdump; local: the emulated network's
decision), a rejecting ISP shows the reset, an open path shows bytes both ways."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.errors import UsageError
from lab.runs import run_once
from lab.runtime.base import Lab, running_lab
from lab.runtime.docker import DockerBackend
from lab.runtime.docker.capture import interface_with
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.topology import resolve
from lab.wire.capture import Capture, choose_hop
from lab.wire.flows import Outcome

SCENARIOS = Path(__file__).parents[2] / "scenarios"


async def capture_one_send(lab: Lab, scenario_id: str, hop: str = "isp") -> Capture:
    scenario = load_scenario(SCENARIOS / f"{scenario_id}.yaml")
    async with lab.capture(hop) as capture:
        await run_once(lab, scenario.client[1].settings)
    return capture


async def on_backend(backend: Any, scenario_id: str) -> Capture:
    scenario = load_scenario(SCENARIOS / f"{scenario_id}.yaml")
    async with running_lab(scenario, backend) as lab:
        return await capture_one_send(lab, scenario_id)


class TestLocal:
    async def test_dropped_port_is_one_unanswered_attempt_named_by_the_router(self) -> None:
        capture = await on_backend(LocalBackend(), "blocked-port-25")
        [flow] = capture.flows
        assert (flow.server_port, flow.outcome) == (25, Outcome.UNANSWERED)
        assert flow.syns is None  # no packets here, so no SYN count is claimed
        assert "isp drops port 25" in flow.describe()
        assert capture.pcap is None

    async def test_rejected_port_is_refused(self) -> None:
        [flow] = (await on_backend(LocalBackend(), "port-25-refused")).flows
        assert flow.outcome is Outcome.REFUSED

    async def test_open_path_is_established_and_only_the_capture_window_counts(self) -> None:
        scenario = load_scenario(SCENARIOS / "happy-path.yaml")
        async with running_lab(scenario, LocalBackend()) as lab:
            await run_once(lab, scenario.client[1].settings)  # before the capture: not in it
            capture = await capture_one_send(lab, "happy-path")
        [flow] = capture.flows
        assert (flow.server_port, flow.outcome) == (587, Outcome.ESTABLISHED)


class TestHopChoice:
    def test_default_is_the_router_in_front_of_the_customer(self) -> None:
        topology = resolve(load_scenario(SCENARIOS / "relay-denied.yaml"))
        assert choose_hop(topology, None) == "home-isp"
        assert choose_hop(topology, "office-gw") == "office-gw"

    def test_unknown_hop_names_the_routers(self) -> None:
        topology = resolve(load_scenario(SCENARIOS / "relay-denied.yaml"))
        with pytest.raises(UsageError, match=r"no router .mx.*home-isp, office-gw"):
            choose_hop(topology, "mx")


def test_interface_is_found_by_address() -> None:
    output = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "15812: eth0    inet 10.213.0.2/24 brd 10.213.0.255 scope global eth0\\ x\n"
        "15822: eth1@if3    inet 10.213.1.2/24 brd 10.213.1.255 scope global eth1\\ x\n"
    )
    from ipaddress import IPv4Address

    assert interface_with(IPv4Address("10.213.0.2"), output) == "eth0"
    assert interface_with(IPv4Address("10.213.1.2"), output) == "eth1"
    assert interface_with(IPv4Address("10.213.9.9"), output) is None


@pytest.mark.docker
class TestDocker:
    @pytest.fixture(scope="class")
    def captures(self, docker_client: Any, node_image: str) -> dict[str, Capture]:
        backend = DockerBackend(docker_client, image=node_image)
        ids = ["blocked-port-25", "port-25-refused", "happy-path"]

        async def everything() -> list[Capture]:
            return await asyncio.gather(*(on_backend(backend, i) for i in ids))

        return dict(zip(ids, asyncio.run(everything()), strict=True))

    def test_dropped_port_shows_retransmitted_syns_and_no_answer(
        self, captures: dict[str, Capture]
    ) -> None:
        [flow] = captures["blocked-port-25"].flows
        assert flow.server_port == 25
        assert flow.outcome is Outcome.UNANSWERED
        assert flow.syns is not None
        assert flow.syns >= 2
        assert flow.bytes_up == flow.bytes_down == 0

    def test_rejected_port_shows_the_reset(self, captures: dict[str, Capture]) -> None:
        [flow] = captures["port-25-refused"].flows
        assert flow.outcome is Outcome.REFUSED
        assert flow.syns == 1

    def test_open_path_carries_the_smtp_session_both_ways(
        self, captures: dict[str, Capture]
    ) -> None:
        [flow] = captures["happy-path"].flows
        assert flow.outcome is Outcome.ESTABLISHED
        assert flow.server_port == 587
        assert flow.bytes_up > 1000
        assert flow.bytes_down > 500

    def test_tcpdump_itself_reads_the_file_as_we_do(
        self, captures: dict[str, Capture], node_image: str, tmp_path: Path
    ) -> None:
        pcap = tmp_path / "blocked.pcap"
        pcap.write_bytes(captures["blocked-port-25"].pcap or b"")
        pcap.chmod(0o644)
        result = subprocess.run(
            ["docker", "run", "--rm", "--network", "none", "--label", "smtplab.lab=test-capture",
             "-v", f"{pcap}:/capture.pcap:ro", node_image, "tcpdump", "-n", "-r", "/capture.pcap"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        lines = result.stdout.splitlines()
        [flow] = captures["blocked-port-25"].flows
        assert len(lines) == flow.syns
        assert all("Flags [S]," in line and ".25:" in line for line in lines)
