"""Runtime test fixtures: a Docker engine when one answers, else a skip that says why.

Tests marked `docker` are skipped here, in one place, when no engine answers;
with `SMTPLAB_REQUIRE_DOCKER=1` (`.ci/run` sets it) they fail instead, so CI
can never pass by skipping them. The node image is found or built once per
session (cold: about a minute and a half offline, mostly debootstrap; cached:
well under a second).

`docker_session_clean` checks, at the end of the session, that nothing this
session created is left on the engine and that the host's routes are what
they were (labs of other sessions on a shared engine are told apart by label).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from ipaddress import IPv4Network, ip_network
from typing import Any

import pytest

from lab.config import settings
from lab.runtime import labels


@functools.cache
def _engine() -> tuple[Any | None, str]:
    """A pinged docker client, or None and the reason."""
    try:
        import docker

        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return None, (
            f"no Docker engine answers ({type(error).__name__}: {first}); "
            "run .ci/install-docker to install and start one"
        )
    from lab.runtime import BUILD_HINT
    from lab.runtime.image import why_unbuildable

    # An engine that answers but cannot get the node image (no registry, no debootstrap)
    # cannot run a docker test either: skip them all with that reason, not one error each.
    unbuildable = why_unbuildable(client)
    if unbuildable is not None:
        client.close()
        return None, f"the Docker engine answers, but {unbuildable}; {BUILD_HINT} fixes it"
    return client, ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `docker` tests, with the reason, when no engine answers (fail where required)."""
    if item.get_closest_marker("docker") is not None:
        client, reason = _engine()
        if client is None:
            if settings.require_docker:
                pytest.fail(f"SMTPLAB_REQUIRE_DOCKER is set, but {reason}")
            pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """The engine's client; closed at the end of the session."""
    client, reason = _engine()
    if client is None:
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def node_image(docker_client: Any) -> str:
    """The node image's tag, found or built once per session (offline without a registry)."""
    from lab.runtime.image import build_node_image

    return build_node_image(None, client=docker_client)


@pytest.fixture(scope="session", autouse=True)
def docker_session_clean() -> Iterator[None]:
    """After the session: no container or network of this session, host routes unchanged."""
    client, _ = _engine()
    if client is None:
        yield
        return
    before = own_routes(client)
    yield
    assert labelled_leftovers(client) == [], "containers or networks of this session are left"
    assert own_routes(client) == before, "the host's routes changed"


def host_routes() -> str:
    """The host's IPv4 routes as `ip -4 route` prints them, main table."""
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout


def own_routes(client: Any) -> list[str]:
    """Host routes, less those of networks that labs of *other* sessions own (another test
    run on the same engine may start or stop labs meanwhile).

    Their networks are listed before and after the routes are read, and both lists count:
    a network made or removed while the routes are read cannot pass for a change.
    """
    foreign = _foreign_subnets(client)
    routes = host_routes()
    foreign += _foreign_subnets(client)
    kept = []
    for line in routes.splitlines():
        destination = line.split()[0]
        if destination != "default" and any(
            ip_network(destination, strict=False).overlaps(subnet) for subnet in foreign
        ):
            continue
        # "linkdown" comes and goes with containers on docker0: not a route change.
        kept.append(line.replace(" linkdown", "").strip())
    return sorted(kept)


def _foreign_subnets(client: Any) -> list[IPv4Network]:
    found: list[IPv4Network] = []
    for network in client.api.networks(filters=labels.selector(labels.LAB)):
        if network["Labels"].get(labels.SESSION) == labels.SESSION_ID:
            continue
        for pool in (network.get("IPAM") or {}).get("Config") or []:
            if "Subnet" in pool:
                found.append(IPv4Network(pool["Subnet"]))
    return found


def labelled_leftovers(client: Any, lab_id: str | None = None) -> list[str]:
    """Names of containers and networks of lab `lab_id`, or of any lab this process made.

    Selected by this process's session label rather than by `smtplab.lab` alone,
    so that labs of someone else's concurrent run on the same engine do not count.
    """
    selector = (
        labels.selector(labels.LAB, lab_id)
        if lab_id is not None
        else labels.selector(labels.SESSION, labels.SESSION_ID)
    )
    containers = client.api.containers(all=True, filters=selector)
    networks = client.api.networks(filters=selector)
    return sorted([c["Names"][0] for c in containers] + [n["Name"] for n in networks])
