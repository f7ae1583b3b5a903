"""The verdict panel says which leg of the route failed, where it used to show only the node."""

from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from lab.diagnosis.events import Diagnosis, FailingHop
from lab.scenario.model import HopKind
from tests.tui.helpers import VERDICT
from tui.widgets.verdict import VerdictPanel


def _text(panel: VerdictPanel, diagnosis: Diagnosis) -> str:
    console = Console(width=200, record=True)
    console.print(panel.render_diagnosis(diagnosis))
    return console.export_text()


def test_the_failing_hop_replaces_the_bare_node() -> None:
    panel = VerdictPanel()
    hop = FailingHop(HopKind.SMART_HOST, "smtp.isp.example[10.0.0.5]:25", "relay")
    shown = _text(panel, replace(VERDICT, hop=hop))
    assert "hop smart host smtp.isp.example[10.0.0.5]:25 (at the ports step)" in shown
    assert "isp (at the ports step)" not in shown
    assert "isp (at the ports step)" in _text(panel, VERDICT)
