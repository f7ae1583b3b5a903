"""The docker backend: one lab = its own docker networks and one container per node.

No lab node has a route to anything but lab subnets; a lab is up when every
node passed its readiness checks, never after a sleep; everything created is
labelled, and found again by label, never by name. The parts, one per module:

- `backend`: `DockerBackend` (engine check, planning onto free subnets, `up`);
- `lab`: `DockerLab`, the running lab and its lifecycle;
- `networks`: subnets free on this host and the bridges made on them;
- `commands`: what each container runs, behind the init script that sets its routes;
- `containers`: creating a node's container, and what readiness checks see of it;
- `files`: the lab's host directory (configs, TLS files, data dirs, one-shot files);
- `namespaces`: sockets and DNS questions from inside a container's network namespace;
- `publish`: the endpoint gateway and the ports published on the host;
- `records`: labs as the engine records them: listing, logs, removal, reaping;
- `live`: labs of this process, removed at interpreter exit;
- `engine`: parallel engine calls and short error text.

Only the docker SDK's low-level API is used, and never `containers.run`: it
pulls a missing image, which offline is a slow failure. The package
re-exports what callers use: the backend, the lab, and the records.
"""

from __future__ import annotations

from lab.runtime.docker.backend import DockerBackend
from lab.runtime.docker.commands import CommandFactory, customer_gateways, node_command
from lab.runtime.docker.files import DATA_ROOT, RUN_DIR, lab_state_dir
from lab.runtime.docker.lab import DockerLab, ReadinessFactory
from lab.runtime.docker.publish import GATEWAY_NODE
from lab.runtime.docker.records import (
    LabInfo,
    container_logs,
    describe_labs,
    find_lab,
    list_labs,
    reap,
    remove_lab,
)

__all__ = [
    "DATA_ROOT",
    "GATEWAY_NODE",
    "RUN_DIR",
    "CommandFactory",
    "DockerBackend",
    "DockerLab",
    "LabInfo",
    "ReadinessFactory",
    "container_logs",
    "customer_gateways",
    "describe_labs",
    "find_lab",
    "lab_state_dir",
    "list_labs",
    "node_command",
    "reap",
    "remove_lab",
]
