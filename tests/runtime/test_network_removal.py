"""Removing a lab network while the engine still holds an endpoint of a container just
removed (seen when several labs go down at once: "has active endpoints").

The engine's stale endpoint cannot be made on demand, so the API here is a stand-in that
answers as the engine does; the real removal runs in every docker test's teardown.
"""

from __future__ import annotations

import docker.errors
import pytest

from lab.runtime.docker.records import remove_network

BUSY = docker.errors.APIError(
    "error while removing network: network smtplab-x-internet id d001 has active endpoints"
)


class EngineApi:
    """Answers `remove_network` with the given errors in turn, then succeeds."""

    def __init__(self, *answers: Exception) -> None:
        self.answers = list(answers)
        self.calls = 0

    def remove_network(self, network_id: str) -> None:
        self.calls += 1
        if self.answers:
            raise self.answers.pop(0)


def test_an_endpoint_the_engine_drops_late_is_waited_out() -> None:
    api = EngineApi(BUSY, BUSY)
    assert remove_network(api, "d001", waits=(0, 0, 0))
    assert api.calls == 3


def test_an_endpoint_that_stays_is_reported_not_raised() -> None:
    api = EngineApi(BUSY, BUSY, BUSY, BUSY)
    assert not remove_network(api, "d001", waits=(0, 0))
    assert api.calls == 3


def test_a_network_already_gone_is_removed() -> None:
    assert remove_network(EngineApi(docker.errors.NotFound("no such network")), "d001")


def test_other_engine_errors_are_raised() -> None:
    with pytest.raises(docker.errors.APIError, match="permission"):
        remove_network(EngineApi(docker.errors.APIError("permission denied")), "d001", waits=())
