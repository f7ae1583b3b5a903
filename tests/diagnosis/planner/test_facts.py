"""The facts collection: steps keep a copy of their evidence; sizes in words."""

from __future__ import annotations

from lab.diagnosis.events import Probe
from lab.diagnosis.planner.facts import human_size
from tests.diagnosis.planner.walks import (
    DNS_OK,
    PORTS_OK,
    SESSION_OK,
    mail,
    walk,
)


def test_steps_carry_a_copy_of_the_facts() -> None:
    done = walk(mail(), [DNS_OK, PORTS_OK, *SESSION_OK])
    banner = done.step(Probe.BANNER)
    done.facts["banner"]["code"] = 999
    assert banner.evidence["code"] == 220


def test_human_size() -> None:
    assert human_size(1_000_000) == "1 MB"
    assert human_size(512) == "512 bytes"
