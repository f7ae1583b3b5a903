"""Every scenario in scenarios/, diagnosed on the local backend, names its `expect.diagnosis`.

The engine sees only the lab (through `LabTarget`) and the mail program's
settings, never the scenario id or its expectations. Where the scenario has a
fix, the engine's own remedy must be proven by its re-send (`fix_verified`).

The diagnoses run concurrently (each in its own lab): most of their time is
waiting for timeouts and queue retries, and the folder must stay fast.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab.catalog import scenario_files
from lab.diagnosis.catalog import load_catalog
from lab.diagnosis.engine import run_diagnosis
from lab.diagnosis.events import Diagnosis, Probe, Status, Step, to_json
from lab.diagnosis.target import LabTarget
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.loader import load_scenario
from lab.smtp.transcript import Direction

SCENARIOS = Path(__file__).parents[2] / "scenarios"
PATHS = scenario_files(SCENARIOS)
CONCURRENCY = 8

Outcome = tuple[list[Step], Diagnosis] | BaseException


async def _diagnose(path: Path, limit: asyncio.Semaphore) -> Outcome:
    scenario = load_scenario(path)
    async with limit:
        try:
            async with running_lab(scenario, LocalBackend()) as lab:
                return await run_diagnosis(LabTarget(lab), scenario.client[1].settings)
        except Exception as error:  # reported by the scenario's own test
            return error


async def _diagnose_all() -> dict[str, Outcome]:
    limit = asyncio.Semaphore(CONCURRENCY)
    results = await asyncio.gather(*(_diagnose(path, limit) for path in PATHS))
    return {path.stem: result for path, result in zip(PATHS, results, strict=True)}


@pytest.fixture(scope="module")
def diagnoses() -> dict[str, Outcome]:
    """Run once for the module, in a loop of its own."""
    return asyncio.run(_diagnose_all())


def diagnosed(diagnoses: dict[str, Outcome], scenario: str) -> tuple[list[Step], Diagnosis]:
    """One scenario's walk and verdict; its error re-raised."""
    outcome = diagnoses[scenario]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _remedy_has_settings(entry_id: str) -> bool:
    entry = next(entry for entry in load_catalog().entries if entry.id == entry_id)
    return bool(entry.remedy.settings or entry.remedy.optional)


@pytest.mark.parametrize("path", PATHS, ids=lambda path: path.stem)
def test_scenario_gets_its_expected_diagnosis(diagnoses: dict[str, Outcome], path: Path) -> None:
    scenario = load_scenario(path)
    outcome = diagnoses[path.stem]
    if isinstance(outcome, BaseException):
        raise outcome
    steps, diagnosis = outcome
    assert scenario.expect.diagnosis is not None, "every scenario names its diagnosis"
    assert diagnosis.entry == scenario.expect.diagnosis, (diagnosis.cause, diagnosis.alternatives)
    if scenario.expect.hop is not None:
        assert diagnosis.hop is not None, "the diagnosis names no failing hop"
        assert diagnosis.hop.kind == scenario.expect.hop, diagnosis.hop
    if scenario.expect.fix is not None and _remedy_has_settings(diagnosis.entry):
        assert diagnosis.fix_verified is True, diagnosis.fix_outcome
        assert steps[-1].probe is Probe.FIX
    elif scenario.expect.fix is not None:
        # A fault no setting the engine can infer fixes (a middlebox on one port): the
        # remedy says who must act, and the scenario's own fix is the proof (`verify`).
        assert diagnosis.fix_verified is None
    # the walk always shows the whole path, skipped steps included, in order
    probes = [step.probe for step in steps if step.probe is not Probe.FIX]
    assert probes[0] is Probe.RESOLVE
    assert {Probe.PORTS, Probe.BANNER, Probe.EHLO, Probe.RCPT, Probe.DATA} <= set(probes)
    assert Probe.DELIVERY in probes  # a lab can follow the message
    # everything the CLI and the TUI get is plain data
    json.dumps([to_json(step) for step in steps])
    json.dumps(to_json(diagnosis))


def test_blocked_port_points_at_the_isp_and_costs_one_timeout(
    diagnoses: dict[str, Outcome],
) -> None:
    outcome = diagnoses["blocked-port-25"]
    assert not isinstance(outcome, BaseException)
    steps, diagnosis = outcome
    ports = next(step for step in steps if step.probe is Probe.PORTS)
    assert ports.status is Status.FAIL
    assert ports.node == "isp"
    timeout = load_scenario(SCENARIOS / "blocked-port-25.yaml").client[1].settings.timeout
    # all ports were tried at once: the sweep costs one timeout, not four
    assert timeout <= ports.duration < timeout + 1.5
    assert "port 587 answered in" in diagnosis.cause
    assert diagnosis.remedy.settings["port"] == 587
    assert diagnosis.remedy.settings["security"] == "starttls"
    assert diagnosis.node == "isp"


def test_greylisting_shows_the_deferral_then_the_delivery(diagnoses: dict[str, Outcome]) -> None:
    outcome = diagnoses["greylisted"]
    assert not isinstance(outcome, BaseException)
    steps, diagnosis = outcome
    delivery = next(step for step in steps if step.probe is Probe.DELIVERY)
    assert delivery.status is Status.WARN
    assert delivery.evidence["deferral_statuses"] == ["4.7.1"]
    assert delivery.evidence["state"] == "delivered"
    assert any("451 4.7.1" in line.text for line in delivery.transcript)
    assert diagnosis.severity is Status.WARN
    assert diagnosis.failed_probe is None
    assert diagnosis.fix_verified is None


def test_healthy_path_is_all_green(diagnoses: dict[str, Outcome]) -> None:
    outcome = diagnoses["happy-path"]
    assert not isinstance(outcome, BaseException)
    steps, diagnosis = outcome
    assert all(step.status in (Status.OK, Status.INFO) for step in steps), [
        (step.probe, step.status) for step in steps
    ]
    assert diagnosis.severity is Status.OK
    assert "correct-horse" not in str([step.transcript for step in steps])


def test_submission_on_465_only_changes_port_and_security(
    diagnoses: dict[str, Outcome],
) -> None:
    steps, diagnosis = diagnosed(diagnoses, "submission-465-only")
    ports = next(step for step in steps if step.probe is Probe.PORTS)
    assert ports.evidence["refused"] == [25, 587, 2525]
    assert ports.evidence["suggested"]["port"] == 465
    # the login alone would still go to a port nobody answers: port and security change too
    settings = diagnosis.remedy.settings
    assert (settings["port"], settings["security"]) == (465, "tls")
    assert settings["auth"]["user"] == "alice@example.com"
    fix = steps[-1]
    assert fix.probe is Probe.FIX
    assert fix.status is Status.OK
    assert "port 465, security tls" in fix.proves
    assert diagnosis.fix_verified is True
    assert "delivered to bob@example.net" in (diagnosis.fix_outcome or "")
    assert "mail.example.com 465" in diagnosis.confirm


def test_office_nat_limit_names_who_must_act_not_a_setting(
    diagnoses: dict[str, Outcome],
) -> None:
    steps, diagnosis = diagnosed(diagnoses, "office-nat-connection-limit")
    banner = next(step for step in steps if step.probe is Probe.BANNER)
    assert banner.status is Status.FAIL
    assert any(
        "421 4.7.0" in line.text and "too many connections from" in line.text
        for line in banner.transcript
    )
    assert diagnosis.node == "relay"
    assert not diagnosis.remedy.settings
    assert diagnosis.fix_verified is None
    assert "who must act" in diagnosis.remedy.text
    assert "per-address limit" in diagnosis.remedy.text


def test_isp_outage_is_network_unreachable_not_a_timeout(diagnoses: dict[str, Outcome]) -> None:
    steps, diagnosis = diagnosed(diagnoses, "isp-outage")
    ports = next(step for step in steps if step.probe is Probe.PORTS)
    assert ports.status is Status.FAIL
    assert ports.evidence["unreachable"] == "network"
    assert {row["state"] for row in ports.evidence["results"]} == {"unreachable"}
    assert ports.duration < 1.0, "an ICMP answer, not a timeout"
    assert diagnosis.entry != "connect-timeout-everywhere"
    assert diagnosis.node == "isp"
    assert not diagnosis.remedy.settings
    assert "internet provider (ISP)" in diagnosis.remedy.text


def test_vrfy_252_is_shown_to_prove_nothing_where_rcpt_refuses(
    diagnoses: dict[str, Outcome],
) -> None:
    steps, diagnosis = diagnosed(diagnoses, "smtp-commands-reference")
    asked = next(step for step in steps if step.probe is Probe.RECIPIENT)
    assert asked.status is Status.WARN
    assert asked.node == "mx"
    assert asked.evidence["vrfy"]["code"] == 252
    assert asked.evidence["rcpt"]["enhanced"] == "5.1.1"
    sent = [line.text for line in asked.transcript if line.direction is Direction.CLIENT]
    assert sent[:2] == ["EHLO recipient-check.invalid", "VRFY acounts@example.net"]
    assert "DATA" not in sent  # nothing was sent
    assert diagnosis.entry == "unknown-user"
    # Elsewhere (a mailbox that exists) nobody asks: the step is for unknown mailboxes only.
    happy, _ = diagnosed(diagnoses, "happy-path")
    assert all(step.probe is not Probe.RECIPIENT for step in happy)
