"""Runtime test fixtures: a Docker engine when one answers, else a skip that says why.

Tests marked `docker` are skipped here, in one place, when no engine answers;
the node image is found or built once per session (cold: about a minute and a
half offline, mostly debootstrap; cached: well under a second).
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

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
    return client, ""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip `docker` tests, with the reason, when no engine answers."""
    if item.get_closest_marker("docker") is not None:
        client, reason = _engine()
        if client is None:
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
    """The node image's tag, found or built (offline when no registry answers)."""
    from lab.runtime.image import build_node_image

    return build_node_image(None, client=docker_client)


def host_routes() -> str:
    """The host's IPv4 routes as `ip -4 route` prints them, main table."""
    return subprocess.run(["ip", "-4", "route"], capture_output=True, text=True, check=True).stdout


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
