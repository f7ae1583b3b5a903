"""`smtplab verify` results as JUnit XML, the report format CI systems read: one test case
per scenario, its failure text what differed from `expect`, its transcripts as system-out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from lab.verify import Verification

SUITE = "smtplab verify"


def junit_xml(results: Sequence[Verification], backend: str) -> str:
    """The JUnit document for `results` (a `testsuites` root with one `testsuite`)."""
    failures = sum(not result.passed for result in results)
    total_time = sum(_seconds(result) for result in results)
    root = ET.Element("testsuites", tests=str(len(results)), failures=str(failures))
    suite = ET.SubElement(
        root,
        "testsuite",
        name=SUITE,
        tests=str(len(results)),
        failures=str(failures),
        errors="0",
        skipped="0",
        time=f"{total_time:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", name="backend", value=backend)
    for result in results:
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.scenario,
            classname=f"smtplab.{backend}",
            time=f"{_seconds(result):.3f}",
        )
        if not result.passed:
            failure = ET.SubElement(case, "failure", message=result.mismatches[0], type="mismatch")
            failure.text = "\n".join(result.mismatches)
        ET.SubElement(case, "system-out").text = _transcripts(result)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, results: Sequence[Verification], backend: str) -> None:
    """Write `junit_xml` to `path`, making its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junit_xml(results, backend), encoding="utf-8")


def _seconds(result: Verification) -> float:
    fix = result.fix_report.duration if result.fix_report else 0.0
    return result.report.duration + fix


def _transcripts(result: Verification) -> str:
    parts = [
        f"run: {result.report.outcome} ({result.report.text})",
        result.report.send.transcript.render(),
    ]
    if result.fix_report is not None:
        parts += [
            f"fix: {result.fix_report.outcome} ({result.fix_report.text})",
            result.fix_report.send.transcript.render(),
        ]
    return "\n".join(parts)
