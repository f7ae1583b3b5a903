"""Every failing scenario under every server flavour: `explain` of what the customer's mail
program saw names the scenario's `expect.diagnosis`.

The customer's text is what a mail program's debug log shows (the server's lines, then
the error) or, for a bounce, the whole bounce message that landed in their mailbox.
Local backend: real servers on real sockets in one process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lab.catalog import scenario_files
from lab.explain import explain
from lab.runs import RunReport, run_once
from lab.runtime.base import running_lab
from lab.runtime.local import LocalBackend
from lab.scenario.model import Outcome, Scenario
from lab.scenario.vocabulary import Flavour
from lab.smtp.transcript import Direction

MAIL_SERVER_KINDS = ("relay", "mx")


def failing() -> list[Path]:
    """Scenarios whose customer does not get the mail through (their expectation says so)."""
    return [
        path
        for path in scenario_files()
        if yaml.safe_load(path.read_text())["expect"]["outcome"] != str(Outcome.DELIVERED)
    ]


def flavoured(path: Path, flavour: Flavour) -> Scenario:
    """The scenario with every mail server worded as `flavour`."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    data.setdefault("id", path.stem)
    for node in data["nodes"].values():
        if node.get("kind") in MAIL_SERVER_KINDS:
            node["flavour"] = str(flavour)
    return Scenario.model_validate(data)


def customer_text(report: RunReport) -> str:
    """The bounce in the sender's mailbox, else the program's log: server lines, then the error."""
    if report.bounce is not None:
        return report.bounce.decode("utf-8", errors="replace")
    lines = [
        f"S: {line.text}"
        for line in report.send.transcript.lines
        if line.direction is Direction.SERVER
    ]
    error = report.text
    if report.code is not None and not error.startswith(str(report.code)):
        error = f"{report.code} {error}"
    return "\n".join([*lines, f"Error: {error}"])


@pytest.mark.parametrize("flavour", list(Flavour), ids=str)
@pytest.mark.parametrize("path", failing(), ids=lambda path: path.stem)
async def test_explain_names_the_scenarios_diagnosis(path: Path, flavour: Flavour) -> None:
    scenario = flavoured(path, flavour)
    assert scenario.expect.diagnosis, f"{path.stem} names no diagnosis"
    async with running_lab(scenario, LocalBackend()) as lab:
        report = await run_once(lab)
    text = customer_text(report)
    _, candidates = explain(text)
    ids = [candidate.entry.id for candidate in candidates]
    assert ids[:1] == [scenario.expect.diagnosis], f"{ids} for:\n{text}"


def test_the_flavours_change_the_words_the_customer_sees() -> None:
    from lab.flavours import reword
    from lab.replies import S535_BAD_CREDENTIALS, S550_USER_UNKNOWN

    lab_line = S550_USER_UNKNOWN(address="bob@example.net")
    worded = {flavour: reword(lab_line, flavour) for flavour in Flavour}
    assert worded[Flavour.LAB] == lab_line
    assert len(set(worded.values())) == len(Flavour)
    assert all(line.startswith("550 5.1.1 ") for line in worded.values())
    assert "bob@example.net" in worded[Flavour.POSTFIX]
    assert reword(S535_BAD_CREDENTIALS(), Flavour.EXIM) == "535 5.7.8 Incorrect authentication data"
    assert reword("250 2.0.0 OK", Flavour.GMAIL) == "250 2.0.0 OK"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("sendmail: {}", "sendmail: not a flavour"),
        ("postfix: {S999_NOPE: x}", "postfix.S999_NOPE: not a reply of lab.replies"),
        ("exim: {S550_USER_UNKNOWN: '{user} unknown'}", "placeholder ['user'] is not in"),
        ("- postfix", "a mapping of flavours"),
    ],
)
def test_a_bad_flavour_table_names_the_problem(text: str, fragment: str) -> None:
    from lab.flavours import FlavourError, parse_flavours

    with pytest.raises(FlavourError) as caught:
        parse_flavours(text, "f.yaml")
    assert fragment in str(caught.value)


def test_a_scenario_with_an_unknown_flavour_is_refused_in_one_line(tmp_path: Path) -> None:
    from lab.errors import ScenarioError
    from lab.scenario.loader import load_scenario

    source = (Path(__file__).parents[2] / "scenarios" / "relay-denied.yaml").read_text()
    bad = tmp_path / "case.yaml"
    bad.write_text(
        source.replace(
            "    hostname: mx.example.net\n",
            "    hostname: mx.example.net\n    flavour: qmail\n",
            1,
        )
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    problems = [str(problem) for problem in caught.value.problems]
    assert any("flavour" in problem and "qmail" in problem for problem in problems), problems
