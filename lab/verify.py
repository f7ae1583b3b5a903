"""Check a run against a scenario's `expect` block, and prove its fix delivers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lab.runs import Fate, RunReport, run_once
from lab.scenario.model import Outcome

if TYPE_CHECKING:
    from lab.runtime.base import Lab
    from lab.scenario.model import Expect


@dataclass(frozen=True)
class Verification:
    """The scenario's run, the fix's run, and every mismatch found."""

    scenario: str
    report: RunReport
    fix_report: RunReport | None
    mismatches: list[str] = field(default_factory=list)

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


async def verify(lab: Lab) -> Verification:
    """Run the scenario, compare with `expect`, then send with the fix and require delivery."""
    scenario = lab.topology.scenario
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
    return Verification(scenario.id, report, fix_report, found)


def _show(value: object) -> str:
    return "none" if value is None else str(value)
