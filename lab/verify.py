"""Check a run against a scenario's `expect` block, prove its fix delivers (the mail
program's `expect.fix` in the same lab, the servers' `expect.repair` in a repaired one),
and check that the diagnosis engine names the expected catalog entry (`expect.diagnosis`)
and the failing hop (`expect.hop`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.runs import Fate, RunReport, run_once
from lab.runtime.base import running_lab
from lab.scenario.model import HopKind, Outcome

if TYPE_CHECKING:
    from lab.diagnosis.events import Diagnosis
    from lab.runtime.base import Backend, Lab
    from lab.scenario.model import Expect


@dataclass(frozen=True)
class Verification:
    """The scenario's run, the fix's and the repair's runs, and every mismatch found."""

    scenario: str
    report: RunReport
    fix_report: RunReport | None
    mismatches: list[str] = field(default_factory=list)
    diagnosis: Diagnosis | None = None
    repair_report: RunReport | None = None

    @property
    def passed(self) -> bool:
        """No mismatch."""
        return not self.mismatches

    def to_json(self) -> dict[str, Any]:
        """Plain data for result files."""
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "mismatches": self.mismatches,
            "run": self.report.to_json(),
            "fix": self.fix_report.to_json() if self.fix_report else None,
            "repair": self.repair_report.to_json() if self.repair_report else None,
            "diagnosis": (
                {
                    "entry": self.diagnosis.entry,
                    "cause": self.diagnosis.cause,
                    "fix_verified": self.diagnosis.fix_verified,
                    "hop": str(self.diagnosis.hop.kind) if self.diagnosis.hop else None,
                }
                if self.diagnosis
                else None
            ),
        }


def mismatches(expect: Expect, report: RunReport) -> list[str]:
    """What differs between what was expected and what happened."""
    found: list[str] = []
    checks: list[tuple[str, object, object]] = [
        ("outcome", expect.outcome, report.outcome),
        ("stage", expect.stage, report.stage),
        ("code", expect.code, report.code),
        ("enhanced", expect.enhanced, report.enhanced),
    ]
    for key, wanted, got in checks:
        if (key == "outcome" or wanted is not None) and wanted != got:
            found.append(f"{key}: expected {_show(wanted)}, got {_show(got)} ({report.text})")
    delivered = {r.address.lower() for r in report.recipients if r.fate is Fate.DELIVERED}
    for address in expect.delivered_to:
        if address.lower() not in delivered:
            found.append(f"delivered_to: {address} did not receive the message")
    return found


async def verify(lab: Lab, *, backend: Backend | None = None) -> Verification:
    """Run the scenario, compare with `expect`, then send with the fix and require delivery.

    With `expect.diagnosis`, the diagnosis runs on a fresh lab of the same
    scenario (from `backend`, by default the one `lab` runs on): the customer's
    first attempt must be what it diagnoses, not a world the run above already
    changed (a greylist that now knows the sender, a queue, counters).
    """
    scenario = lab.topology.scenario
    # The diagnosis runs in its own lab, so it can run while this one is exercised: most of
    # either is waiting (timeouts, queue retries), and verify stays about as fast as before.
    diagnosing = (
        asyncio.create_task(_diagnose_fresh(lab, backend))
        if scenario.expect.diagnosis is not None
        else None
    )
    repairing = asyncio.create_task(_run_repaired(lab, backend)) if scenario.expect.repair else None
    diagnosis = None
    repair_report = None
    try:
        report = await run_once(lab)
        found = mismatches(scenario.expect, report)
        fix_report = None
        if scenario.expect.fix is not None:
            fixed = scenario.expect.fix.apply(report.settings)
            fix_report = await run_once(lab, fixed)
            if fix_report.outcome is not Outcome.DELIVERED:
                found.append(
                    f"fix: expected the corrected settings to deliver, got {fix_report.outcome} "
                    f"at {fix_report.stage} ({fix_report.text})"
                )
        if repairing is not None:
            repair_report = await repairing
            if repair_report.outcome is not Outcome.DELIVERED:
                found.append(
                    f"repair: expected the repaired servers to deliver, got "
                    f"{repair_report.outcome} at {repair_report.stage} ({repair_report.text})"
                )
        if diagnosing is not None and scenario.expect.diagnosis is not None:
            diagnosis = await diagnosing
            found += diagnosis_mismatches(
                scenario.expect.diagnosis, diagnosis, hop=scenario.expect.hop
            )
    finally:
        for task in (diagnosing, repairing):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return Verification(scenario.id, report, fix_report, found, diagnosis, repair_report)


async def _run_repaired(lab: Lab, backend: Backend | None) -> RunReport:
    """The customer's own send, in a fresh lab whose servers carry `expect.repair`."""
    from lab.runtime import get_backend
    from lab.scenario.repair import repaired

    scenario = repaired(lab.topology.scenario)
    async with running_lab(scenario, backend or get_backend(lab.backend)) as fixed:
        return await run_once(fixed)


async def _diagnose_fresh(lab: Lab, backend: Backend | None) -> Diagnosis:
    from lab.diagnosis.engine import run_diagnosis
    from lab.diagnosis.target import LabTarget
    from lab.runtime import get_backend

    scenario = lab.topology.scenario
    async with running_lab(scenario, backend or get_backend(lab.backend)) as fresh:
        _, diagnosis = await run_diagnosis(LabTarget(fresh), scenario.client[1].settings)
    return diagnosis


def diagnosis_mismatches(
    expected: str, diagnosis: Diagnosis, *, hop: HopKind | None = None
) -> list[str]:
    """The expected catalog entry or failing hop was not named, or its remedy did not deliver."""
    found: list[str] = []
    if diagnosis.entry != expected:
        found.append(f"diagnosis: expected {expected}, got {diagnosis.entry} ({diagnosis.cause})")
    named = diagnosis.hop.kind if diagnosis.hop is not None else None
    if hop is not None and named != hop:
        where = f" ({diagnosis.hop.where})" if diagnosis.hop is not None else ""
        found.append(f"hop: expected {hop}, the diagnosis named {_show(named)}{where}")
    if diagnosis.fix_verified is False:
        found.append(
            f"diagnosis: the remedy of {diagnosis.entry} did not deliver ({diagnosis.fix_outcome})"
        )
    return found


def _show(value: object) -> str:
    return "none" if value is None else str(value)
