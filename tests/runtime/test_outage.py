"""The ISP outage that says so (`outage: unreachable` on a router): every connection from
the customer's side fails at once with ENETUNREACH, on both backends; on docker because the
router's iptables answer ICMP network unreachable, locally because the emulated network
raises the same error. Distinct from a dropped port (a timeout) and a rejected one (refused).
"""

from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path
from typing import Any

import pytest

from lab.net import NetworkUnreachable
from lab.runtime.base import Backend, running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario

SCENARIOS = Path(__file__).parents[2] / "scenarios"
# Far below any connect timeout: an ICMP answer, not a wait.
AT_ONCE = 1.0


async def _every_port_is_network_unreachable(backend: Backend) -> None:
    scenario = load_scenario(SCENARIOS / "isp-outage.yaml")
    async with running_lab(scenario, backend) as lab:
        relay = str(lab.topology.nodes["relay"].address)
        connector = lab.connector_for("laptop")
        for port in (25, 587, 465):
            started = time.monotonic()
            with pytest.raises(NetworkUnreachable) as raised:
                await connector.open_connection(relay, port, timeout=5.0)
            assert time.monotonic() - started < AT_ONCE
            assert raised.value.errno == errno.ENETUNREACH
            assert f"network unreachable for {relay}:{port}" in str(raised.value)
        # the office's own DNS still answers: only the way out is down
        assert await lab.resolve("laptop", "mail.example.com") == [relay]


def test_outage_is_network_unreachable_locally() -> None:
    asyncio.run(_every_port_is_network_unreachable(LocalBackend()))


@pytest.mark.docker
def test_outage_is_network_unreachable_on_docker(docker_client: Any, node_image: str) -> None:
    from lab.runtime.docker import DockerBackend, DockerLab

    asyncio.run(_every_port_is_network_unreachable(DockerBackend(docker_client, image=node_image)))

    async def rules() -> str:
        scenario = load_scenario(SCENARIOS / "isp-outage.yaml")
        backend = DockerBackend(docker_client, image=node_image)
        async with running_lab(scenario, backend) as lab:
            assert isinstance(lab, DockerLab)
            _, output = lab.exec("isp", ["iptables", "-S", "SMTPLAB-ISP"])
            return str(output)

    assert "-j REJECT --reject-with icmp-net-unreachable" in asyncio.run(rules())
