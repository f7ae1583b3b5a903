"""The diagnosis engine: from symptom to root cause to a proven fix.

Front ends (CLI, TUI, tests) need only this:

    from lab.diagnosis import LabTarget, ServerTarget, diagnose, run_diagnosis

    async for event in diagnose(LabTarget(lab), settings):   # Step ... Step, Diagnosis
        ...

Modules: `events` (the Step/Diagnosis contract), `target` (what is diagnosed),
`planner` (decisions, no I/O), `requests` (what the planner asks, what comes
back), `probes` (the sockets), `catalog` +
`faults.yaml` (known faults as data), `engine` (the loop), `report` (output).

Names are imported lazily so that `import lab.diagnosis.events` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.diagnosis.catalog import load_catalog, match
    from lab.diagnosis.engine import diagnose, run_diagnosis
    from lab.diagnosis.events import Diagnosis, Probe, Remedy, Status, Step, to_json
    from lab.diagnosis.target import DiagnosisTarget, LabTarget, ServerTarget

_EXPORTS = {
    "diagnose": "engine",
    "run_diagnosis": "engine",
    "load_catalog": "catalog",
    "match": "catalog",
    "DiagnosisTarget": "target",
    "LabTarget": "target",
    "ServerTarget": "target",
    "Diagnosis": "events",
    "Probe": "events",
    "Remedy": "events",
    "Status": "events",
    "Step": "events",
    "to_json": "events",
}

__all__ = [
    "Diagnosis",
    "DiagnosisTarget",
    "LabTarget",
    "Probe",
    "Remedy",
    "ServerTarget",
    "Status",
    "Step",
    "diagnose",
    "load_catalog",
    "match",
    "run_diagnosis",
    "to_json",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'lab.diagnosis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lab.diagnosis.{module}"), name)
