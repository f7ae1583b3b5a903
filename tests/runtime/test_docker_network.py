"""The docker backend's network layout, on a real engine, with placeholder nodes.

The happy-path scenario's two networks come up with the real router program
(`lab.nodes.router`) and idle containers everywhere else; a tiny listener in
the mx container stands in for servers. Isolation is proven by inspecting
routes inside the containers (`ip route get`), never by sending traffic out;
connections are only ever made between lab addresses.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest

from lab.errors import LabStartError
from lab.net import ConnectRefused, ConnectTimeout
from lab.nodes.config import RouterConfig
from lab.nodes.resolver import DnsTemporaryFailure, NameNotFound
from lab.nodes.router import interface_in, parse_interfaces, router_rules
from lab.runtime import labels
from lab.runtime.docker import DockerBackend, DockerLab, node_command, reap
from lab.runtime.readiness import WaitStrategy, role_checks
from lab.runtime.subnets import NEVER, host_taken_networks
from lab.scenario.loader import load_scenario
from lab.scenario.model import PortPolicy, RouterNode, Scenario
from lab.topology import NodePlan, Topology
from tests.runtime.conftest import host_routes, labelled_leftovers, own_routes

pytestmark = pytest.mark.docker

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "happy-path.yaml"
SLEEP = ["python3", "-c", "import time; time.sleep(1e9)"]
DROPPED, REJECTED, ALLOWED = 2525, 2526, 2527
POLICIES = {DROPPED: PortPolicy.DROP, REJECTED: PortPolicy.REJECT}
OUTSIDE_WORLD = ("192.0.2.1", "8.8.8.8")  # inspected with `ip route get`, never contacted
CONNECT_TIMEOUT = 2.0

# Answers each connection with the peer address it sees, then closes: shows NAT too.
LISTENER = """
import socket, sys, threading
def serve(port):
    server = socket.create_server(("0.0.0.0", port), backlog=16)
    while True:
        connection, peer = server.accept()
        connection.sendall(peer[0].encode() + b"\\n")
        connection.close()
for port in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(port),)).start()
"""

# Prints what a mail program would see: connected (and the peer the server saw), timeout,
# refused.
PROBE = """
import socket, sys
try:
    address, timeout = (sys.argv[1], int(sys.argv[2])), float(sys.argv[3])
    connection = socket.create_connection(address, timeout=timeout)
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
except OSError as error:
    print("error", error.errno)
else:
    print("connected", connection.recv(64).decode().strip())
"""


def placeholder(node: NodePlan, config_path: str) -> list[str]:
    """The real router and DNS programs; everything else just stays up."""
    return node_command(node, config_path) if node.kind in ("router", "dns") else list(SLEEP)


def placeholder_checks(node: NodePlan, topology: Topology) -> list[WaitStrategy]:
    """Readiness of what `placeholder` runs: the router's and the DNS server's own checks."""
    return role_checks(node, topology) if node.kind in ("router", "dns") else []


def backend_for(client: Any, image: str, **options: Any) -> DockerBackend:
    options.setdefault("command", placeholder)
    options.setdefault("readiness", placeholder_checks)
    return DockerBackend(client, image=image, **options)


def with_port_policies(scenario: Scenario) -> Scenario:
    """The scenario with its ISP dropping one port and rejecting another."""
    isp = scenario.nodes["isp"]
    assert isinstance(isp, RouterNode)
    nodes = {**scenario.nodes, "isp": isp.model_copy(update={"ports": POLICIES})}
    return scenario.model_copy(update={"nodes": nodes})


def run(lab: DockerLab, node: str, *command: str) -> tuple[int, str]:
    return lab.exec(node, list(command))


@pytest.fixture(scope="module")
def routes_before(docker_client: Any) -> list[str]:
    return own_routes(docker_client)


@pytest.fixture(scope="module")
def lab(docker_client: Any, node_image: str, routes_before: list[str]) -> Iterator[DockerLab]:
    taken_before = host_taken_networks(docker_client)
    backend = backend_for(docker_client, node_image)
    topology = backend.plan(with_port_policies(load_scenario(SCENARIO)))
    for network in topology.networks.values():
        assert not any(network.subnet.overlaps(other) for other in taken_before), network
    running = backend.up_sync(topology)
    try:
        mx = str(topology.nodes["mx"].address)
        api = docker_client.api
        listener = api.exec_create(
            running.containers["mx"],
            ["python3", "-c", LISTENER, str(DROPPED), str(REJECTED), str(ALLOWED)],
        )
        api.exec_start(listener, detach=True)
        # Ready when the mx itself can connect (same container: no router involved).
        output = ""
        for _ in range(100):
            _, output = run(running, "mx", "python3", "-c", PROBE, mx, str(ALLOWED), "1")
            if output.startswith("connected"):
                break
        else:
            pytest.fail(f"listener in mx never came up: {output}")
        yield running
    finally:
        running.down_sync()
        assert labelled_leftovers(docker_client, running.id) == []
        assert not running.host_dir.exists()
        assert own_routes(docker_client) == routes_before


class TestLayout:
    """Networks and routes as DESIGN.md measured them to work."""

    def test_subnets_avoid_host_routes_and_reserved_ranges(self, lab: DockerLab) -> None:
        for network in lab.topology.networks.values():
            assert not any(network.subnet.overlaps(other) for other in NEVER)
            # The host's own routes now include the lab bridges: compare with the others.
            for line in host_routes().splitlines():
                destination = line.split()[0]
                if destination == "default" or destination == str(network.subnet):
                    continue
                assert not network.subnet.overlaps(_network(destination)), line

    def test_customer_side_is_a_plain_bridge_the_rest_internal(
        self, lab: DockerLab, docker_client: Any
    ) -> None:
        inspected = {
            name: docker_client.api.inspect_network(network_id)
            for name, network_id in lab.networks.items()
        }
        assert {name: info["Internal"] for name, info in inspected.items()} == {
            "office": False,
            "internet": True,
        }
        for name, info in inspected.items():
            assert info["Labels"][labels.LAB] == lab.id
            assert info["Labels"][labels.NETWORK] == name
            subnet = info["IPAM"]["Config"][0]["Subnet"]
            assert subnet == str(lab.topology.networks[name].subnet)

    def test_containers_have_their_planned_addresses_and_labels(
        self, lab: DockerLab, docker_client: Any
    ) -> None:
        for name, container_id in lab.containers.items():
            info = docker_client.api.inspect_container(container_id)
            assert info["Config"]["Labels"][labels.NODE] == name
            assert info["Config"]["Labels"][labels.LAB] == lab.id
            attached = info["NetworkSettings"]["Networks"]
            addresses = {
                network: attached[lab.network_name(network)]["IPAddress"]
                for network in lab.topology.nodes[name].addresses
            }
            planned = lab.topology.nodes[name].addresses
            assert addresses == {network: str(address) for network, address in planned.items()}

    def test_client_reaches_the_outside_network_through_the_router(self, lab: DockerLab) -> None:
        router = lab.topology.nodes["isp"]
        code, output = run(lab, "laptop", "ip", "route", "get", str(router.addresses["internet"]))
        assert code == 0, output
        assert f"via {router.addresses['office']} " in output

    @pytest.mark.parametrize("destination", OUTSIDE_WORLD)
    def test_client_default_route_ends_at_the_router(
        self, lab: DockerLab, destination: str
    ) -> None:
        code, output = run(lab, "laptop", "ip", "route", "get", destination)
        assert code == 0, output
        assert f"via {lab.topology.nodes['isp'].addresses['office']} " in output

    @pytest.mark.parametrize("destination", OUTSIDE_WORLD)
    @pytest.mark.parametrize("node", ["isp", "dns", "relay", "mx"])
    def test_no_route_out_of_the_lab(self, lab: DockerLab, node: str, destination: str) -> None:
        code, output = run(lab, node, "ip", "route", "get", destination)
        assert code != 0
        assert "unreachable" in output.lower()

    def test_node_programs_cannot_change_routes(self, lab: DockerLab) -> None:
        # The placeholder is the program: its capability bounding set lacks NET_ADMIN (bit 12).
        script = (
            "import pathlib\n"
            "for p in pathlib.Path('/proc').glob('[0-9]*'):\n"
            "    if (p / 'cmdline').read_bytes().split(b'\\0')[:3] == %r:\n"
            "        print([l for l in (p / 'status').read_text().splitlines()"
            " if l.startswith('CapBnd')][0].split()[1])\n"
        ) % [word.encode() for word in SLEEP]
        for node in ("laptop", "mx"):
            code, output = run(lab, node, "python3", "-c", script)
            assert code == 0, output
            [bounding_text] = output.split()  # exactly one program process
            bounding = int(bounding_text, 16)
            assert not bounding & (1 << 12), (node, output)


class TestRouter:
    """The router program's rules, and what a client sees because of them."""

    def test_iptables_rules_are_router_rules(self, lab: DockerLab) -> None:
        router = lab.topology.nodes["isp"]
        code, output = run(lab, "isp", "ip", "-j", "-4", "addr", "show")
        assert code == 0, output
        interfaces = parse_interfaces(json.loads(output))
        inside = interface_in(lab.topology.networks["office"].subnet, interfaces)
        outside = interface_in(lab.topology.networks["internet"].subnet, interfaces)
        listed: dict[str, list[str]] = {}
        for table in ("filter", "nat"):
            code, output = run(lab, "isp", "iptables", "-t", table, "-S")
            assert code == 0, output
            listed[table] = output.splitlines()
        assert isinstance(router.config, RouterConfig)
        expected = router_rules(router.config, inside, outside)
        for rule in expected:
            assert rule[0] == "-t"
            assert " ".join(rule[2:]) in listed[rule[1]], rule
        ours = [line for line in listed["filter"] if "SMTPLAB-ISP" in line]
        assert len(ours) == sum(1 for rule in expected if "SMTPLAB-ISP" in rule)

    def test_router_has_no_default_route(self, lab: DockerLab) -> None:
        code, output = run(lab, "isp", "ip", "-4", "route", "show", "default")
        assert (code, output.strip()) == (0, "")

    def probe(self, lab: DockerLab, port: int) -> str:
        mx = str(lab.topology.nodes["mx"].address)
        code, output = run(
            lab, "laptop", "python3", "-c", PROBE, mx, str(port), str(CONNECT_TIMEOUT)
        )
        assert code == 0, output
        return output.strip()

    def test_allowed_port_connects_and_is_masqueraded(self, lab: DockerLab) -> None:
        outside = lab.topology.nodes["isp"].addresses["internet"]
        assert self.probe(lab, ALLOWED) == f"connected {outside}"

    def test_dropped_port_times_out(self, lab: DockerLab) -> None:
        assert self.probe(lab, DROPPED) == "timeout"

    def test_rejected_port_is_refused(self, lab: DockerLab) -> None:
        assert self.probe(lab, REJECTED) == "refused"

    def test_servers_cannot_connect_inward(self, lab: DockerLab) -> None:
        laptop = str(lab.topology.nodes["laptop"].address)
        _, output = run(lab, "mx", "python3", "-c", PROBE, laptop, "22", "1")
        # No route to the customer's network at all from the outside.
        assert output.strip().startswith("error"), output


@pytest.mark.skipif(os.geteuid() != 0, reason="entering a container's namespace needs root")
class TestLookups:
    """The lab DNS, asked from where a node stands: through the router for the client."""

    async def test_resolve_from_the_client(self, lab: DockerLab) -> None:
        relay = str(lab.topology.nodes["relay"].address)
        assert await _eventually(lambda: lab.resolve("laptop", "mail.example.com")) == [relay]
        assert await lab.resolve("laptop", "example.net", "MX") == ["10 mx.example.net."]

    async def test_nxdomain_is_a_lookup_error(self, lab: DockerLab) -> None:
        await _eventually(lambda: lab.resolve("laptop", "mail.example.com"))
        with pytest.raises(NameNotFound):
            await lab.resolve("relay", "nowhere.example.org")

    def test_programs_resolver_asks_the_lab_dns(self, lab: DockerLab) -> None:
        # getaddrinfo goes to docker's embedded resolver, which forwards to the lab DNS.
        script = "import socket; print(socket.gethostbyname('mx.example.net'))"
        code, output = run(lab, "laptop", "python3", "-c", script)
        assert (code, output.strip()) == (0, str(lab.topology.nodes["mx"].address))

    def test_certificates_are_where_configs_say(self, lab: DockerLab) -> None:
        assert lab.ca_file is not None
        assert lab.ca_file.is_file()
        config = json.loads((lab.host_dir / "_config" / "relay.json").read_text())
        for key in ("cert_file", "key_file"):
            code, output = run(lab, "relay", "test", "-s", config["tls"][key])
            assert code == 0, (config["tls"][key], output)
        assert config["ca_file"] == "/var/lib/smtplab/_tls/ca.pem"


async def _eventually(lookup: Callable[[], Awaitable[list[str]]]) -> list[str]:
    """The lookup's result once the DNS program answers (it starts with the lab)."""
    for _ in range(50):
        try:
            return await lookup()
        except DnsTemporaryFailure:
            await asyncio.sleep(0.1)
    raise AssertionError("the lab DNS never answered")


class TestConnector:
    """`connector_for` connects from inside the node's namespace: same verdicts."""

    async def test_allowed(self, lab: DockerLab) -> None:
        mx = str(lab.topology.nodes["mx"].address)
        reader, writer = await lab.connector_for("laptop").open_connection(
            mx, ALLOWED, timeout=CONNECT_TIMEOUT
        )
        try:
            peer = (await reader.readline()).decode().strip()
        finally:
            writer.close()
            await writer.wait_closed()
        assert IPv4Address(peer) == lab.topology.nodes["isp"].addresses["internet"]

    async def test_dropped(self, lab: DockerLab) -> None:
        mx = str(lab.topology.nodes["mx"].address)
        with pytest.raises(ConnectTimeout):
            await lab.connector_for("laptop").open_connection(mx, DROPPED, timeout=1.0)

    async def test_rejected(self, lab: DockerLab) -> None:
        mx = str(lab.topology.nodes["mx"].address)
        with pytest.raises(ConnectRefused):
            await lab.connector_for("laptop").open_connection(mx, REJECTED, timeout=CONNECT_TIMEOUT)


class TestCleanup:
    """Nothing outlives a lab: not after down, not after a failed up, not after a crash."""

    def test_down_removes_everything(self, docker_client: Any, node_image: str) -> None:
        before = own_routes(docker_client)
        backend = backend_for(docker_client, node_image)
        with backend.up_sync(backend.plan(load_scenario(SCENARIO))) as lab:
            assert len(labelled_leftovers(docker_client, lab.id)) == 7  # 5 nodes, 2 networks
            assert lab.host_dir.is_dir()
        assert labelled_leftovers(docker_client, lab.id) == []
        assert not lab.host_dir.exists()
        assert own_routes(docker_client) == before
        lab.down_sync()  # idempotent

    def test_failed_up_removes_what_it_created(self, docker_client: Any, node_image: str) -> None:
        def broken_router(node: NodePlan, config_path: str) -> list[str]:
            return ["false"] if node.kind == "router" else list(SLEEP)

        before = own_routes(docker_client)
        existing = labelled_leftovers(docker_client)  # e.g. the module's lab
        backend = backend_for(docker_client, node_image, command=broken_router)
        with pytest.raises(LabStartError, match="node isp exited with 1"):
            backend.up_sync(backend.plan(load_scenario(SCENARIO)))
        assert labelled_leftovers(docker_client) == existing
        assert own_routes(docker_client) == before

    def test_subnet_taken_meanwhile_is_planned_again(
        self, docker_client: Any, node_image: str
    ) -> None:
        from docker.types import IPAMConfig, IPAMPool

        backend = backend_for(docker_client, node_image)
        stale = backend.plan(load_scenario(SCENARIO))
        office = stale.networks["office"].subnet
        # Another run creates a network on the planned subnet before this one does.
        rival = docker_client.api.create_network(
            f"smtplab-rival-{labels.SESSION_ID[:8]}",
            internal=True,
            ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(office))]),
            labels=labels.create_labels(f"rival-{labels.SESSION_ID[:8]}"),
        )
        try:
            with backend.up_sync(stale) as lab:
                assert lab.topology.networks["office"].subnet != office
        finally:
            docker_client.api.remove_network(rival["Id"])

    def test_reap_removes_labs_whose_owner_is_gone(
        self, docker_client: Any, node_image: str
    ) -> None:
        owned = labels.create_labels("reap-test-owned")
        dead = {**labels.create_labels("reap-test-dead"), labels.SESSION: "gone"}
        dead[labels.PID] = "999999999:1"  # no such process
        api = docker_client.api
        for object_labels in (owned, dead):
            api.create_container(node_image, SLEEP, labels=object_labels, network_disabled=True)
        try:
            removed = reap(docker_client)
            assert "reap-test-dead" in removed
            assert "reap-test-owned" not in removed
            assert labelled_leftovers(docker_client, "reap-test-dead") == []
            assert len(labelled_leftovers(docker_client, "reap-test-owned")) == 1
        finally:
            reap(docker_client, all_labs=False)
            for container in api.containers(all=True, filters=labels.selector(labels.LAB)):
                if container["Labels"][labels.LAB].startswith("reap-test-"):
                    api.remove_container(container["Id"], force=True)


def _network(text: str) -> Any:
    from ipaddress import ip_network

    return ip_network(text, strict=False)
