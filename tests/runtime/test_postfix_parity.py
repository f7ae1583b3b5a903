"""Every catalog scenario Postfix can express, with every relay and mx run as real Postfix
(`--mta postfix`): the customer sees what the scenario expects (outcome, stage, class of the
reply code) and the engine names the same catalog entry as with the lab's own servers,
while the words on the wire are Postfix's own.

The lab's servers meet `expect` exactly (`test_parity.py`); here wording and the exact code
may differ (Postfix answers 554 where the lab says 530) and are the point, a different
verdict is not. Scenarios Postfix cannot express are listed with their reasons.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from lab.catalog import load_catalog
from lab.runtime.base import running_lab
from lab.runtime.docker import DockerBackend
from lab.runtime.software import unexpressible
from lab.scenario.model import Scenario
from lab.scenario.mta import with_mta
from lab.scenario.vocabulary import MtaSoftware
from lab.smtp.transcript import Direction
from lab.topology import resolve
from lab.verify import Verification, verify

pytestmark = pytest.mark.docker

CONCURRENCY = 2
DATA_ROOT = Path("/var/lib/smtplab")


def _as_postfix(scenario: Scenario) -> tuple[Scenario, dict[str, list[str]]]:
    converted = with_mta(scenario, MtaSoftware.POSTFIX)
    return converted, unexpressible(resolve(converted, data_root=DATA_ROOT))


ALL = [_as_postfix(scenario) for scenario in load_catalog()[0]]
EXPRESSIBLE = [scenario for scenario, refused in ALL if not refused]
REFUSED = {scenario.id: refused for scenario, refused in ALL if refused}
# Verdicts that differ with Postfix: an engine or catalog bug, not a wording difference.
ENGINE_WRONG: dict[str, str] = {}


# Not a verdict: lab time in Postfix's whole seconds. postgrey's one-second delay against the
# relay's two-second queue lifetime delivers on an idle host and bounces on a busy one.
TIMING: dict[str, str] = {
    # Tried with a 1-day relay lifetime: delivered in 6 of 6 runs at six labs at once, yet
    # still queued past the follow window in 3 of 6 at about twelve labs on 2 cores; so not
    # the lifetime alone (cause not found yet).
    "greylisted": "postgrey's 1 s delay vs the Postfix relay's 2 s lifetime: bounces under load",
}


# smtpd turning a client away instead of greeting it (anvil's connection count limit).
REFUSED_BEFORE_BANNER = re.compile(r"^421 4\.7\.0 \S+ Error: too many connections from \S+$", re.M)


def _param(scenario: Scenario) -> Any:
    reason = ENGINE_WRONG.get(scenario.id)
    marks = [pytest.mark.xfail(strict=True, reason=f"engine: {reason}")] if reason else []
    if scenario.id in TIMING:
        marks = [pytest.mark.xfail(strict=False, reason=TIMING[scenario.id])]
    return pytest.param(scenario.id, id=scenario.id, marks=marks)


@pytest.fixture(scope="module")
def postfix_runs(
    request: pytest.FixtureRequest, docker_client: Any, node_image: str
) -> dict[str, Verification | BaseException]:
    """The selected scenarios verified with Postfix nodes, `CONCURRENCY` labs at a time."""
    selected = {
        item.callspec.params.get("scenario_id")
        for item in request.session.items
        if hasattr(item, "callspec")
    }
    chosen = [scenario for scenario in EXPRESSIBLE if scenario.id in selected]
    backend = DockerBackend(docker_client, image=node_image)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(scenario: Scenario) -> Verification:
        async with gate, running_lab(scenario, backend) as lab:
            return await verify(lab, backend=backend)

    async def every() -> list[Verification | BaseException]:
        return await asyncio.gather(*(one(s) for s in chosen), return_exceptions=True)

    results = asyncio.run(every())
    return {scenario.id: result for scenario, result in zip(chosen, results, strict=True)}


def _server_lines(verification: Verification) -> str:
    reports = [verification.report, verification.fix_report]
    return "\n".join(
        line.text
        for report in reports
        if report is not None
        for line in report.send.transcript.lines
        if line.direction is Direction.SERVER
    )


@pytest.mark.parametrize("scenario_id", [_param(scenario) for scenario in EXPRESSIBLE])
def test_postfix_nodes_give_the_same_verdict(
    scenario_id: str, postfix_runs: dict[str, Verification | BaseException]
) -> None:
    result = postfix_runs[scenario_id]
    if isinstance(result, BaseException):
        raise result
    expect = next(scenario for scenario in EXPRESSIBLE if scenario.id == scenario_id).expect
    report = result.report
    seen = f"{report.outcome} at {report.stage} ({report.text})"
    assert report.outcome == expect.outcome, seen
    if expect.stage is not None:
        assert report.stage == expect.stage, seen
    if expect.code is not None:
        assert report.code is not None, seen
        assert report.code // 100 == expect.code // 100, seen
    for address in expect.delivered_to:
        assert any(r.address == address and str(r.fate) == "delivered" for r in report.recipients)
    if expect.fix is not None:
        assert result.fix_report is not None
        assert str(result.fix_report.outcome) == "delivered", result.fix_report.text
    if expect.repair:
        assert result.repair_report is not None
        assert str(result.repair_report.outcome) == "delivered", result.repair_report.text
    if expect.diagnosis is not None:
        assert result.diagnosis is not None
        assert result.diagnosis.entry == expect.diagnosis, result.diagnosis.cause
    lines = _server_lines(result)
    if lines:  # a server answered: it was Postfix, in its own words
        assert "ESMTP Postfix" in lines or REFUSED_BEFORE_BANNER.search(lines), lines


def test_refused_scenarios_say_why() -> None:
    assert REFUSED, "some catalog scenarios need what Postfix cannot do"
    for node_reasons in REFUSED.values():
        assert all(reasons for reasons in node_reasons.values())
