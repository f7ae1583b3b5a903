"""A slow or failing Docker engine is one line from `up`, never a traceback; the client
kept after the availability probe waits as long as every other engine call."""

from __future__ import annotations

import pytest
import requests

from lab.errors import LabStartError
from lab.runtime.docker import DockerBackend
from lab.runtime.docker.backend import ENGINE_TIMEOUT, _engine_error


def test_an_engine_timeout_during_up_is_a_lab_start_error() -> None:
    error = requests.exceptions.ReadTimeout(
        "UnixHTTPConnectionPool(host='localhost', port=None): Read timed out. (read timeout=5)"
    )
    mapped = _engine_error("lab-1", error)
    assert isinstance(mapped, LabStartError)
    assert str(mapped).startswith("lab lab-1: the Docker engine failed: ")


def test_other_errors_pass_through() -> None:
    error = ValueError("a bug")
    assert _engine_error("lab-1", error) is error


@pytest.mark.docker
def test_the_probe_client_keeps_the_engine_timeout(docker_client: object) -> None:
    backend = DockerBackend()
    assert backend.available() is None
    assert backend.client.api.timeout == ENGINE_TIMEOUT  # not the probe's 5 s
