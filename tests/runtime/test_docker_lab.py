"""A docker lab with its real node programs: readiness, the mail program's secrets, the
state directory, and the endpoints published for a developer's own application."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.config import settings
from lab.errors import LabStartError
from lab.runtime.base import Endpoint
from lab.runtime.docker import (
    GATEWAY_NODE,
    RUN_DIR,
    DockerBackend,
    DockerLab,
    customer_gateways,
    node_command,
)
from lab.scenario.loader import load_scenario
from lab.scenario.model import AuthSettings
from lab.topology import NodePlan
from tests.runtime.conftest import labelled_leftovers

pytestmark = pytest.mark.docker

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def relay_replaced(script: str) -> Any:
    """A command factory: the real programs, but the relay runs `script` instead."""

    def command(node: NodePlan, config_path: str) -> list[str]:
        if node.name == "relay":
            return ["sh", "-c", script]
        return node_command(node, config_path)

    return command


class TestReadinessFailures:
    """A node that never becomes ready: the error says why, with its log; nothing is left."""

    def test_timeout_carries_the_container_log(self, docker_client: Any, node_image: str) -> None:
        backend = DockerBackend(
            docker_client,
            image=node_image,
            command=relay_replaced("echo boom-from-the-relay; exec sleep 1000"),
            # Every node's checks get this long: enough for the router on a busy machine.
            ready_timeout=6,
        )
        existing = labelled_leftovers(docker_client)
        with pytest.raises(LabStartError) as caught:
            backend.up_sync(backend.plan(load_scenario(SCENARIOS / "happy-path.yaml")))
        message = str(caught.value)
        assert "node relay not ready after 6 s: no SMTP greeting on" in message
        assert "--- relay: container log" in message
        assert "boom-from-the-relay" in message
        assert labelled_leftovers(docker_client) == existing

    def test_an_exited_program_fails_at_once(self, docker_client: Any, node_image: str) -> None:
        backend = DockerBackend(
            docker_client,
            image=node_image,
            command=relay_replaced("echo dying-relay >&2; exit 3"),
            ready_timeout=60,  # not waited out: the exit is noticed at the next poll
        )
        with pytest.raises(LabStartError, match="node relay exited with 3") as caught:
            backend.up_sync(backend.plan(load_scenario(SCENARIOS / "happy-path.yaml")))
        assert "dying-relay" in str(caught.value)


@pytest.fixture(scope="module")
def lab(docker_client: Any, node_image: str) -> Iterator[DockerLab]:
    """blocked-port-25 with its real programs: the ISP drops 25, 587 goes through."""
    backend = DockerBackend(docker_client, image=node_image)
    running = backend.up_sync(backend.plan(load_scenario(SCENARIOS / "blocked-port-25.yaml")))
    try:
        yield running
    finally:
        running.down_sync()
        assert labelled_leftovers(docker_client, running.id) == []
        assert not running.host_dir.exists()


def test_host_dir_is_apart_from_the_cli_records(lab: DockerLab) -> None:
    assert lab.host_dir == settings.state_dir / "docker" / lab.id
    assert (lab.host_dir / "relay" / "events.jsonl").is_file()


async def test_the_password_never_reaches_a_command_line(lab: DockerLab) -> None:
    commands: list[list[str]] = []
    real_exec = lab.exec

    def recording_exec(node: str, command: list[str]) -> tuple[int, str]:
        commands.append(command)
        return real_exec(node, command)

    settings_ = lab.topology.scenario.client[1].settings.model_copy(
        update={
            "port": 587,
            "auth": AuthSettings(user="alice@example.com", password="s3cret-Pa55"),
        }
    )
    lab.exec = recording_exec  # type: ignore[method-assign]
    try:
        result = await lab.send(settings_)
    finally:
        del lab.exec
    assert result.stage is not None  # it ran and reported
    assert commands
    assert not any("s3cret-Pa55" in " ".join(command) for command in commands)
    assert "--settings-file" in commands[0]
    assert list((lab.host_dir / RUN_DIR).iterdir()) == []  # the file is gone again


@pytest.fixture(scope="module")
def endpoints(lab: DockerLab) -> list[Endpoint]:
    return asyncio.run(lab.publish_endpoints())


def endpoint(endpoints: list[Endpoint], node: str, port: int) -> Endpoint:
    [found] = [e for e in endpoints if e.node == node and e.lab_port == port]
    return found


def test_endpoints_are_on_loopback_for_every_server_port(
    lab: DockerLab, endpoints: list[Endpoint]
) -> None:
    assert {(e.node, e.lab_port) for e in endpoints} == {
        (name, port)
        for name, node in lab.topology.nodes.items()
        if node.kind != "dns"
        for port in node.tcp_ports
    }
    assert {e.host for e in endpoints} == {"127.0.0.1"}


def test_an_allowed_port_greets_as_seen_from_the_customer_network(
    lab: DockerLab, endpoints: list[Endpoint]
) -> None:
    submission = endpoint(endpoints, "relay", 587)
    assert submission.note == "routed by isp"
    with socket.create_connection((submission.host, submission.port), timeout=5) as sock:
        sock.settimeout(5)
        assert sock.recv(100).startswith(b"220 mail.example.com")
        sock.sendall(b"QUIT\r\n")
        assert sock.recv(100).startswith(b"221")
    # The relay saw the ISP's address (the customer's NAT), not the gateway's or the host's.
    outside = str(lab.topology.nodes["isp"].addresses["internet"])
    sessions = [e for e in lab.events("relay") if e.get("event") == "session"]
    assert sessions[-1]["client"] == outside


def test_a_dropped_port_is_accepted_by_dockers_proxy_and_stays_silent(
    endpoints: list[Endpoint],
) -> None:
    smtp = endpoint(endpoints, "relay", 25)
    assert "isp drops port 25" in smtp.note
    assert "userland proxy accepts" in smtp.note
    # What the note promises: the host-side connect succeeds, then nothing arrives (the
    # SYN the proxy forwards dies at the ISP router).
    with socket.create_connection((smtp.host, smtp.port), timeout=5) as sock:
        sock.settimeout(1.5)
        with pytest.raises(TimeoutError):
            sock.recv(100)


def test_the_gateway_routes_only_through_the_isp(lab: DockerLab, endpoints: list[Endpoint]) -> None:
    assert endpoints
    router = customer_gateways(lab.topology)["laptop"]
    for destination in ("8.8.8.8", "192.0.2.1"):
        code, output = lab.exec(GATEWAY_NODE, ["ip", "-4", "route", "get", destination])
        assert code == 0, output
        assert f"via {router} " in output
