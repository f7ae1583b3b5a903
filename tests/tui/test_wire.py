"""The workbench's wire view on the real local lab: the step being examined picks out its
connections (the dropped port 25 among the ports probed), and a send shows its own."""

from __future__ import annotations

from lab.diagnosis.events import Probe
from tests.tui.helpers import text_of, wait_for
from tests.tui.test_app import SIZE, start_case, step_to_verdict, workbench
from tui.app import make_app
from tui.widgets.stepper import DiagnosisStepper


async def test_ports_step_shows_the_unanswered_port_25_and_the_fix_send_its_port() -> None:
    app = make_app("blocked-port-25", "local")
    async with app.run_test(size=SIZE) as pilot:
        await start_case(pilot, app)
        bench = workbench(app)
        await wait_for(pilot, lambda: bench.feed.done, what="the diagnosis run to end")
        assert bench.diagnosis_flows, "the engine's connections crossed the ISP"
        stepper = bench.query_one("#stepper", DiagnosisStepper)
        for _ in range(10):
            if any(step.probe is Probe.PORTS for step in stepper.steps):
                break
            await pilot.press("n")
            await pilot.pause(0.05)
        assert stepper.steps[-1].probe is Probe.PORTS  # just revealed: the step being examined
        await pilot.press("w")
        await wait_for(pilot, lambda: "Wire · step" in text_of(bench.query_one("#wire-title")))
        body = text_of(bench.query_one("#wire-body"))
        lines = body.splitlines()
        assert any(line.startswith("unanswered") and ":25  no answer" in line for line in lines)
        assert any(line.startswith("established") and ":587" in line for line in lines)

        await step_to_verdict(pilot, app)
        await pilot.press("f")
        await wait_for(pilot, lambda: bench.last_report is not None and not bench.sending)
        title = text_of(bench.query_one("#wire-title"))
        assert title.startswith("Wire · re-send with the fix #1 · delivered")
        [line] = text_of(bench.query_one("#wire-body")).strip().splitlines()
        assert line.startswith("established")
        assert ":587" in line
