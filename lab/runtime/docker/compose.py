"""A scenario's docker lab as a docker compose project (`smtplab export --compose DIR`), for
CI that already runs `docker compose` / `docker-compose`.

The same lab the docker backend makes: the node image, one service per node with the
same command, init script, capabilities, sysctls and lab DNS (`container_spec`), one
network per scenario network on subnets chosen against this host's routes and networks
when exporting (internal except the customer's side), and the lab's files (node configs,
TLS files, data directories) bind-mounted from the project's `lab/` directory as the
backend mounts its own (mailboxes can be read there). Each service's healthcheck is the
readiness the backend waits for
(router rules in place, DNS and mail servers serving), and what stands behind a router
starts once the router is healthy. Everything is labelled as a detached lab:
`docker-compose down` removes it, and so does `smtplab down LAB`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lab.runtime import labels
from lab.runtime.docker.commands import customer_gateways, node_command
from lab.runtime.docker.containers import container_spec
from lab.runtime.docker.files import CONFIG_DIR, DATA_ROOT, write_node_files

if TYPE_CHECKING:
    from lab.runtime.docker.backend import DockerBackend
    from lab.scenario.model import Scenario
    from lab.topology import NodePlan, Topology

COMPOSE_FILE = "docker-compose.yml"  # the name both compose implementations look for
FILES_DIR = "lab"  # under the project: configs, TLS files, node data dirs
# What each role's program logs once it serves (`lab.runtime.readiness.role_checks`).
READY_EVENT = {"router": "router-ready", "dns": "ready", "relay": "started", "mx": "started"}


@dataclass(frozen=True)
class ComposeExport:
    """An exported project: where, its project name, and its lab id (label `smtplab.lab`)."""

    directory: Path
    project: str
    lab_id: str
    topology: Topology

    @property
    def compose_file(self) -> Path:
        """The compose file."""
        return self.directory / COMPOSE_FILE

    @property
    def client(self) -> str:
        """The service that runs the customer's mail program."""
        return self.topology.client.name

    def send_command(self) -> list[str]:
        """What to `exec` in the client service to send once with the scenario's settings
        (prints the result as JSON on its last line)."""
        config = f"{DATA_ROOT}/{CONFIG_DIR}/{self.client}.json"
        return ["python3", "-m", "lab.nodes", "client", config]


def export_compose(scenario: Scenario, directory: Path, backend: DockerBackend) -> ComposeExport:
    """Write `scenario`'s lab as a compose project into `directory` (empty or new).

    The node image is found or built first; subnets are chosen now, against
    this host's routes and docker networks, as the backend would.
    """
    image = backend.ensure_image()
    topology = backend.plan(scenario)
    lab_id = f"{scenario.id[:24]}-{secrets.token_hex(3)}"
    project = f"smtplab-{lab_id}"
    directory.mkdir(parents=True, exist_ok=True)
    files = directory / FILES_DIR
    write_node_files(topology, files)
    document = {
        "services": {
            node.name: _service(topology, node, image, lab_id) for node in topology.nodes.values()
        },
        "networks": {
            network.name: {
                "internal": not network.customer_side,
                "labels": labels.create_labels(
                    lab_id, network=network.name, scenario=scenario.id, detached=True
                ),
                "ipam": {
                    "config": [{"subnet": str(network.subnet), "gateway": str(network.gateway)}]
                },
            }
            for network in topology.networks.values()
        },
    }
    header = (
        f"# smtp-lab scenario {scenario.id!r} ({scenario.title}), exported by "
        f"`smtplab export`.\n"
        f"# Up: docker-compose up -d   (or: docker compose up -d --wait)\n"
        f"# Send as the customer: docker-compose exec -T {topology.client.name} "
        + " ".join(ComposeExport(directory, project, lab_id, topology).send_command())
        + "\n# Down: docker-compose down   (subnets were free on the exporting host when "
        "written)\n"
    )
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
    (directory / COMPOSE_FILE).write_text(header + text, encoding="utf-8")
    # Both compose implementations read the project name from .env in the project directory.
    (directory / ".env").write_text(f"COMPOSE_PROJECT_NAME={project}\n", encoding="utf-8")
    return ComposeExport(directory, project, lab_id, topology)


def _service(topology: Topology, node: NodePlan, image: str, lab_id: str) -> dict[str, Any]:
    gateways = customer_gateways(topology)
    spec = container_spec(topology, node, node_command, gateways.get(node.name))
    service: dict[str, Any] = {
        "image": image,
        # Compose substitutes $VARIABLES in the file: the init script's own `$1` must stay.
        "command": [part.replace("$", "$$") for part in spec.argv],
        "hostname": spec.hostname,
        "init": True,
        "cap_add": spec.cap_add,
        "sysctls": spec.sysctls,
    }
    if spec.dns:
        service["dns"] = spec.dns
    service["labels"] = labels.create_labels(
        lab_id, node=node.name, scenario=topology.scenario.id, detached=True
    )
    service["networks"] = {
        network: {"ipv4_address": str(address)} for network, address in node.addresses.items()
    }
    # The lab's files (node configs, TLS files, data dirs) where every node reads them, as
    # the backend mounts them: compose `configs` are swarm-only in docker-compose 1.x.
    service["volumes"] = [f"./{FILES_DIR}:{DATA_ROOT}"]
    event = READY_EVENT.get(node.kind)
    if event is not None and node.running:
        events = f"{DATA_ROOT}/{node.name}/events.jsonl"
        service["healthcheck"] = {
            "test": ["CMD-SHELL", f'grep -q \'"event": "{event}"\' {events}'],
            "interval": "1s",
            "timeout": "3s",
            "retries": 60,
        }
    # A program behind a router may send as soon as it starts: only once the rules are in.
    routers = {
        str(router.addresses[spec_.inside]): router.name for router, spec_ in topology.routers()
    }
    gateway = gateways.get(node.name)
    if gateway is not None and node.kind != "client" and node.running:
        service["depends_on"] = {routers[str(gateway)]: {"condition": "service_healthy"}}
    return service


def wait_healthy(client: Any, exported: ComposeExport, timeout: float = 60.0) -> None:
    """Until every service of `exported` runs and passed its healthcheck (docker-compose
    1.x has no `up --wait`).

    Raises:
        LabStartError: not all healthy within `timeout` seconds, with each node's state.
    """
    import time

    from lab.errors import LabStartError

    deadline = time.monotonic() + timeout
    while True:
        found = client.api.containers(filters=labels.selector(labels.LAB, exported.lab_id))
        states: dict[str, str] = {}
        for container in found:
            health = client.api.inspect_container(container["Id"])["State"].get("Health")
            states[container["Labels"][labels.NODE]] = health["Status"] if health else "running"
        if len(states) == len(exported.topology.nodes) and all(
            state in ("healthy", "running") for state in states.values()
        ):
            return
        if time.monotonic() > deadline:
            raise LabStartError(f"lab {exported.lab_id} not healthy after {timeout:g} s: {states}")
        time.sleep(0.2)
