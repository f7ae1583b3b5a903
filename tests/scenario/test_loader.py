"""Scenario files: the catalog validates, and every kind of mistake is one precise line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.catalog import scenario_files
from lab.errors import ScenarioError
from lab.scenario.loader import load_scenario, parse_scenario
from lab.scenario.model import ClientNode, Outcome, PortPolicy, RouterNode

HAPPY = Path(__file__).parents[2] / "scenarios" / "happy-path.yaml"


def problems_of(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "case.yaml", default_id="case")
    return [str(problem) for problem in caught.value.problems]


def happy_with(old: str, new: str) -> str:
    text = HAPPY.read_text()
    assert old in text, f"fixture drift: {old!r} not in happy-path.yaml"
    return text.replace(old, new, 1)


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_every_catalog_scenario_is_valid(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.id == path.stem
    assert isinstance(scenario.client[1], ClientNode)
    assert scenario.ticket.strip(), "every case needs a ticket text for training"


def test_catalog_covers_the_first_cases() -> None:
    ids = {path.stem for path in scenario_files()}
    assert ids >= {
        "happy-path", "blocked-port-25", "port-25-refused", "auth-required",
        "auth-bad-password", "auth-mechanism-mismatch", "starttls-required",
        "relay-denied", "bad-recipient", "unknown-domain", "message-too-large",
        "greylisted", "destination-down",
    }  # fmt: skip


def test_values_are_typed() -> None:
    scenario = load_scenario(HAPPY.parent / "blocked-port-25.yaml")
    router = scenario.nodes["isp"]
    assert isinstance(router, RouterNode)
    assert router.ports == {25: PortPolicy.DROP}
    assert scenario.expect.outcome is Outcome.CONNECT_TIMEOUT


class TestProblems:
    """Each mistake: file, line, key path, what is wrong (and what is allowed)."""

    def test_bad_yaml(self) -> None:
        assert problems_of("title: x\n  nodes: [\n") == [
            "case.yaml:2: invalid YAML: mapping values are not allowed here"
        ]

    def test_unknown_key_lists_allowed_keys(self) -> None:
        text = happy_with("    hostname: mx.example.net", "    hostnme: mx.example.net")
        found = problems_of(text)
        line = line_of(text, "hostnme")
        assert (
            f"case.yaml:{line}: nodes.mx.hostnme: unknown key 'hostnme'; allowed here: "
            in found[-1]
        )
        assert "hostname" in found[-1]
        assert any("nodes.mx.hostname: required key is missing" in p for p in found)

    def test_wrong_type(self) -> None:
        text = happy_with("      port: 587", "      port: five-eight-seven")
        line = line_of(text, "five-eight-seven")
        assert problems_of(text) == [
            f"case.yaml:{line}: nodes.laptop.settings.port: input should be a valid integer, "
            "unable to parse string as an integer (got 'five-eight-seven')"
        ]

    def test_closed_vocabulary(self) -> None:
        text = happy_with("    outside: internet", "    outside: internet\n    ports: {25: block}")
        line = line_of(text, "block")
        assert problems_of(text) == [
            f"case.yaml:{line}: nodes.isp.ports.25: input should be 'allow', 'drop' or 'reject' "
            "(got 'block')"
        ]

    def test_dangling_network(self) -> None:
        text = happy_with("    inside: office", "    inside: ofice")
        line = line_of(text, "ofice")
        assert problems_of(text) == [
            f"case.yaml:{line}: nodes.isp.inside: no network named 'ofice'; "
            "networks: internet, office"
        ]

    def test_dangling_node_in_dns_record(self) -> None:
        text = happy_with(
            '          - {type: MX, value: "10 mx.example.net."}',
            '          - {type: MX, value: "10 mx.example.net."}\n'
            "          - {name: www, type: A, node: web}",
        )
        line = line_of(text, "node: web")
        assert problems_of(text) == [
            f"case.yaml:{line}: nodes.dns.zones.example.net.records[1].node: no node named 'web'; "
            "nodes: dns, isp, laptop, mx, relay"
        ]

    def test_unknown_node_kind(self) -> None:
        text = happy_with("    kind: mx", "    kind: exchange")
        line = line_of(text, "kind: exchange") - 1
        found = problems_of(text)
        assert len(found) == 1
        assert found[0].startswith(f"case.yaml:{line}: nodes.mx: unknown node kind; allowed: ")

    def test_duplicate_key(self) -> None:
        text = happy_with(
            "    hostname: mx.example.net", "    hostname: mx.example.net\n    hostname: b"
        )
        line = line_of(text, "hostname: b")
        assert problems_of(text) == [f"case.yaml:{line}: nodes.mx.hostname: duplicate key"]

    def test_mailbox_outside_the_servers_domains(self) -> None:
        text = happy_with("{bob@example.net: {}}", "{bob@example.org: {}}")
        line = line_of(text, "bob@example.org")
        assert problems_of(text) == [
            f"case.yaml:{line}: nodes.mx.mailboxes.bob@example.org: mailbox must be an address "
            "in this server's domains (example.net)"
        ]

    def test_repair_of_a_node_that_is_not_there(self) -> None:
        text = happy_with("  diagnosis: healthy", "  diagnosis: healthy\n  repair:\n    relya: {}")
        line = line_of(text, "relya")
        assert problems_of(text) == [
            f"case.yaml:{line}: expect.repair.relya: no node named 'relya' to repair; "
            "nodes: laptop, isp, dns, relay, mx"
        ]

    def test_repair_is_checked_as_the_world_it_makes(self) -> None:
        repair = "  repair:\n    relay:\n      routing: {smarthost_login: {user: u, password: p}}"
        text = happy_with("  diagnosis: healthy", f"  diagnosis: healthy\n{repair}")
        line = line_of(text, "smarthost_login")
        assert problems_of(text) == [
            f"case.yaml:{line}: expect.repair.relay.routing: repaired: smarthost_login is set, "
            "but there is no smarthost to log in to"
        ]

    def test_repair_references_are_checked(self) -> None:
        repair = (
            "  repair:\n    relay:\n      routing: {connectors: [{domains: ['*.net'], to: partnr}]}"
        )
        text = happy_with("  diagnosis: healthy", f"  diagnosis: healthy\n{repair}")
        found = problems_of(text)
        assert len(found) == 1
        assert found[0].startswith(f"case.yaml:{line_of(text, 'partnr')}: expect.repair.relay")
        assert "partnr" in found[0]

    def test_empty_file(self) -> None:
        assert problems_of("") == ["case.yaml:1: the file is empty"]

    def test_unreadable_file(self, tmp_path: Path) -> None:
        with pytest.raises(ScenarioError) as caught:
            load_scenario(tmp_path / "missing.yaml")
        assert "missing.yaml: cannot read" in str(caught.value)


def test_cli_reports_one_line_and_exit_code_2(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(happy_with("    inside: office", "    inside: ofice"))
    result = subprocess.run(
        [sys.executable, "-m", "lab.cli", "validate", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"{broken}:{line_of(broken.read_text(), 'ofice')}: nodes.isp.inside: no network named "
        "'ofice'; networks: internet, office"
    ]
    assert "Traceback" not in result.stderr
