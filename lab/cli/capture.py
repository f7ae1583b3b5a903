"""`smtplab capture SCENARIO`: start the scenario's lab, record what crosses one router
while the customer sends once, and show the TCP flows (docker: tcpdump's pcap, which
`--pcap FILE` keeps; local: the emulated network's decisions)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.catalog import load
from lab.cli.common import add_backend_option, add_command, out, pick_backend, progress, run_async
from lab.errors import UsageError
from lab.runtime.base import running_lab

if TYPE_CHECKING:
    from lab.cli.common import Commands
    from lab.wire.capture import Capture


def add_parsers(commands: Commands) -> None:
    """Register `capture`."""
    sub = add_command(
        commands,
        "capture",
        cmd_capture,
        "Start a scenario's lab, capture what crosses a router while the customer sends "
        "once, and summarise the TCP flows (SYNs unanswered, resets, bytes each way).",
    )
    sub.add_argument("scenario", metavar="SCENARIO", help="an id from `smtplab list` or a file")
    sub.add_argument(
        "--hop", metavar="ROUTER", help="the router to capture on (default: the customer's ISP)"
    )
    sub.add_argument("--fix", action="store_true", help="send with the scenario's fix applied")
    sub.add_argument(
        "--pcap", type=Path, metavar="FILE", help="keep the packets as a pcap file (docker)"
    )
    add_backend_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_capture(args: argparse.Namespace) -> int:
    """`smtplab capture SCENARIO [--hop ROUTER]`."""
    from lab.runs import run_once
    from lab.wire.capture import choose_hop

    scenario = load(args.scenario)
    backend = pick_backend(args.backend)
    if args.pcap is not None and backend.name != "docker":
        raise UsageError("--pcap needs the docker backend: the local backend has no packets")
    settings = scenario.client[1].settings
    if args.fix:
        if scenario.expect.fix is None:
            raise UsageError(f"scenario {scenario.id!r} has no fix")
        settings = scenario.expect.fix.apply(settings)
    hop = choose_hop(backend.plan(scenario), args.hop)

    async def work() -> Capture:
        with progress(f"capturing on {hop} ({scenario.id}, {backend.name})", quiet=args.json):
            async with running_lab(scenario, backend) as lab, lab.capture(hop) as capture:
                await run_once(lab, settings)
            return capture

    capture = run_async(work)
    if args.pcap is not None and capture.pcap is not None:
        args.pcap.write_bytes(capture.pcap)
    if args.json:
        out.print_json(json.dumps(_as_json(capture, backend.name)))
        return 0
    where = f" ({capture.interface})" if capture.interface else ""
    out.print(f"What crossed {hop}{where} on the {backend.name} backend:", markup=False)
    for flow in capture.flows:
        out.print(f"  {flow.describe()}", markup=False, soft_wrap=True)
    if not capture.flows:
        out.print("  nothing: no TCP connection crossed this router", markup=False)
    if backend.name == "local":
        out.print(
            "  (local backend: connection decisions, not packets; "
            "`--backend docker` captures the packets)",
            markup=False,
        )
    if args.pcap is not None:
        out.print(f"pcap written to {args.pcap}", markup=False)
    return 0


def _as_json(capture: Capture, backend: str) -> dict[str, Any]:
    return {
        "backend": backend,
        "hop": capture.router,
        "interface": capture.interface or None,
        "flows": [
            {
                "client": str(flow.client),
                "client_port": flow.client_port or None,
                "server": str(flow.server),
                "server_port": flow.server_port,
                "outcome": flow.outcome.value,
                "syns": flow.syns,
                "bytes_up": flow.bytes_up,
                "bytes_down": flow.bytes_down,
                "retransmissions": flow.retransmissions,
                "seconds": round(flow.last - flow.first, 3),
                "summary": flow.describe(),
            }
            for flow in capture.flows
        ],
    }
