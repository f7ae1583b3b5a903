"""The docker backend (`DockerBackend`): whether an engine answers, planning a scenario onto
free subnets, and bringing a topology up as a `DockerLab`.

When `up` fails halfway, whatever it created so far is removed before the
error propagates; a lab is registered for removal at exit while it is being
made (`lab.runtime.docker.live`), unless it is detached.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from typing import TYPE_CHECKING, Any

from lab.errors import LabStartError
from lab.runtime.colleagues import open_colleague_sessions
from lab.runtime.docker import live
from lab.runtime.docker.commands import CommandFactory, node_command
from lab.runtime.docker.engine import STARTING, first_line, off_loop
from lab.runtime.docker.files import DATA_ROOT, lab_state_dir
from lab.runtime.docker.lab import READY_TIMEOUT, DockerLab, ReadinessFactory
from lab.runtime.docker.networks import (
    NETWORK_LOCK,
    SUBNET_ATTEMPTS,
    clash,
    docker_subnets,
    release,
    reserve,
    taken_subnets,
)
from lab.runtime.progress import Progress, say_nothing
from lab.runtime.readiness import role_checks
from lab.topology import Topology, resolve

if TYPE_CHECKING:
    from lab.runtime.base import Backend, Lab
    from lab.scenario.model import Scenario

ENGINE_TIMEOUT = 60  # seconds per API call; image builds stream, so they are not cut short


class DockerBackend:
    """Brings topologies up as docker networks and containers."""

    name = "docker"

    def __init__(
        self,
        client: Any | None = None,
        *,
        image: str | None = None,
        command: CommandFactory = node_command,
        progress: Progress = say_nothing,
        detached: bool = False,
        ready_timeout: float = READY_TIMEOUT,
        readiness: ReadinessFactory = role_checks,
    ) -> None:
        """Args:
        client: a `docker.DockerClient` (default: from the environment, on first use).
        image: the node image (default: `build_node_image`, found or built on first use).
        command: what each node's container runs.
        progress: receives a line per slow step (image build).
        detached: labs outlive this process (`smtplab up`): no owner pid in their
            labels, no removal at exit; `smtplab down` removes them.
        ready_timeout: seconds each readiness check may take before `up` fails.
        readiness: the checks per node (`lab.runtime.readiness.role_checks`); pass
            others together with a `command` that runs something else.
        """
        self._client = client
        self.image = image
        self.command = command
        self.progress = progress
        self.detached = detached
        self.ready_timeout = ready_timeout
        self.readiness = readiness

    @property
    def client(self) -> Any:
        """The docker client, made on first use."""
        if self._client is None:
            import docker

            self._client = docker.from_env(timeout=ENGINE_TIMEOUT)
        return self._client

    def available(self) -> str | None:
        """None when an engine answers, else why not."""
        try:
            import docker

            probe = self._client or docker.from_env(timeout=5)
            probe.ping()
            if self._client is None:
                # The short timeout was for this question only: the client is kept, and under
                # load (several labs on one engine) starting a container takes over 5 s.
                probe.api.timeout = ENGINE_TIMEOUT
        except Exception as error:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            return (
                f"no Docker engine answers at {where} ({first_line(error)}); "
                "start one (.ci/install-docker does) or use the local backend"
            )
        # The probe may fail fast; the lab's own calls get the patience of a busy engine.
        probe.api.timeout = ENGINE_TIMEOUT
        self._client = probe
        return None

    def plan(self, scenario: Scenario) -> Topology:
        """`scenario` resolved onto subnets that are free on this host.

        Raises:
            SoftwareUnsupported: a Postfix node's policy cannot be expressed in Postfix.
        """
        from lab.runtime.software import refuse_unexpressible

        topology = resolve(scenario, docker_subnets(scenario, self.client), data_root=DATA_ROOT)
        refuse_unexpressible(topology)
        return topology

    async def up(self, topology: Topology) -> DockerLab:
        """Create and start a lab; on failure everything created so far is removed.

        Raises:
            LabStartError: a subnet collides, the engine refused, or a node was not ready.
        """
        lab = await off_loop(functools.partial(self.up_sync, topology))
        try:
            started = time.perf_counter()
            lab.colleagues = await open_colleague_sessions(lab)
            lab.timings["colleagues"] = time.perf_counter() - started
        except BaseException:
            await lab.down()
            raise
        return lab

    def up_sync(self, topology: Topology) -> DockerLab:
        """`up` for callers without an event loop.

        When another lab took one of the planned subnets in the meantime (two
        runs planning at once), the scenario is planned afresh, up to
        `SUBNET_ATTEMPTS` times, unless its subnets are pinned: use the returned
        lab's `topology`, not the one passed in.
        """
        image = self.ensure_image()
        pinned = _pinned(topology)
        for attempt in range(1, SUBNET_ATTEMPTS + 1):
            try:
                return self._up_once(topology, image)
            except _SubnetTaken:
                if pinned or attempt == SUBNET_ATTEMPTS:
                    raise
                topology = self.plan(topology.scenario)
        raise AssertionError("unreachable")

    def ensure_image(self) -> str:
        """The node image's tag: found or built once (with progress), then remembered."""
        if self.image is None:
            from lab.runtime.image import build_node_image

            self.image = build_node_image(None, self.progress, client=self.client)
        return self.image

    def _up_once(self, topology: Topology, image: str) -> DockerLab:
        started = time.perf_counter()
        client = self.client
        lab_id = f"{topology.scenario.id[:24]}-{secrets.token_hex(3)}"
        # Labs of this process planned at the same time would all pick the same free
        # subnets: choosing and reserving them is one step per process; the networks are
        # then created outside the lock, so that a class of labs is not made one network
        # at a time. (Another process may still win a race: the engine refuses, and
        # `up_sync` plans again.)
        with NETWORK_LOCK:
            taken = taken_subnets(client)
            clashes = [
                f"network {network.name}: {network.subnet} {found}"
                for network in topology.networks.values()
                if (found := clash(network.subnet, taken)) is not None
            ]
            if clashes and _pinned(topology):
                raise _SubnetTaken("; ".join(clashes))
            if clashes:
                topology = self.plan(topology.scenario)
            subnets = [network.subnet for network in topology.networks.values()]
            reserve(subnets)
        lab = DockerLab(
            client,
            topology,
            lab_id,
            lab_state_dir(lab_id),
            image,
            detached=self.detached,
            ready_timeout=self.ready_timeout,
            readiness=self.readiness,
        )
        lab.timings["plan"] = time.perf_counter() - started
        # Registered while it is being made, so that an interrupted `up` cleans up.
        live.track(lab)
        try:
            queued = time.perf_counter()
            with STARTING:
                lab.timings["queued"] = time.perf_counter() - queued
                try:
                    lab.create_networks()
                finally:
                    release(subnets)
                lab.create(self.command)
            if self.detached:
                live.forget(lab_id)
        except BaseException as error:
            lab.down_sync()
            raise _engine_error(lab_id, error) from error
        return lab


def _pinned(topology: Topology) -> bool:
    return any(network.subnet for network in topology.scenario.networks.values())


def _engine_error(lab_id: str, error: BaseException) -> BaseException:
    """What `up` raises for `error`: subnet races retried, engine errors as LabStartError."""
    import docker.errors

    if isinstance(error, docker.errors.APIError) and "overlaps" in str(error):
        return _SubnetTaken(f"lab {lab_id}: {first_line(error)}")
    if isinstance(error, docker.errors.DockerException):
        return LabStartError(f"lab {lab_id}: {first_line(error)}")
    if type(error).__module__.split(".")[0] in ("requests", "urllib3"):
        # The engine did not answer in time or dropped the connection (a timeout, a restart).
        return LabStartError(f"lab {lab_id}: the Docker engine failed: {first_line(error)}")
    return error


class _SubnetTaken(LabStartError):
    """A planned subnet is in use by the time the lab is created."""


if TYPE_CHECKING:

    def _conforms(lab: DockerLab, backend: DockerBackend) -> tuple[Lab, Backend]:
        """mypy checks here that both implement the runtime protocols."""
        return lab, backend
