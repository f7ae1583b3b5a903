"""Line impairments in scenario files: how people write them, and the mistakes refused."""

from __future__ import annotations

import pytest

from lab.scenario.loader import parse_scenario
from lab.scenario.network import RouterNode
from tests.scenario.test_loader import happy_with, line_of, problems_of

ISP = "    outside: internet"


def test_written_as_people_write_them() -> None:
    text = happy_with(
        ISP,
        ISP + "\n    impairment: {latency: 600ms, bandwidth: 64kbit, loss: 0.02, "
        "reset_after: 1MB, ports: [587]}",
    )
    router = parse_scenario(text, "case.yaml", default_id="case").nodes["isp"]
    assert isinstance(router, RouterNode)
    assert router.impairment is not None
    line = router.impairment
    assert (line.latency, line.bandwidth, line.loss, line.reset_after, line.ports) == (
        0.6,
        64_000,
        0.02,
        1_000_000,
        [587],
    )


@pytest.mark.parametrize(
    ("impairment", "message"),
    [
        ("{bandwidth: 64kbps}", "expected a bandwidth such as 64kbit or 2mbit, not '64kbps'"),
        ("{bandwidth: 0kbit}", "a bandwidth must be more than 0 bit/s"),
        ("{loss: 0.9}", "input should be less than or equal to 0.5"),
        ("{latency: 1h}", "input should be less than or equal to 10"),
        ("{reset_after: 0}", "input should be greater than 0"),
    ],
    ids=["bandwidth-unit", "bandwidth-zero", "loss", "latency", "reset-after"],
)
def test_bad_values_are_one_line_each(impairment: str, message: str) -> None:
    text = happy_with(ISP, f"{ISP}\n    impairment: {impairment}")
    [problem] = problems_of(text)
    assert problem.startswith(f"case.yaml:{line_of(text, 'impairment')}: nodes.isp.impairment.")
    assert message in problem


def test_a_port_cannot_be_both_inspected_and_impaired() -> None:
    text = happy_with(
        ISP, f"{ISP}\n    inspection: {{ports: [25]}}\n    impairment: {{latency: 1s}}"
    )
    [problem] = problems_of(text)
    assert "port 25: a router cannot both inspect and impair a port" in problem
