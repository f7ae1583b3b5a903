"""`smtplab run` and `smtplab verify`: start a scenario's lab, send as its customer and
show what happened; or run scenarios and check their `expect` and `fix` (non-zero when
anything differs)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import render
from lab.catalog import scenario_paths
from lab.cli.common import (
    add_backend_option,
    add_command,
    add_mta_option,
    err,
    load_scenario,
    out,
    pick_backend,
    progress,
    run_async,
)
from lab.errors import UsageError
from lab.runtime.base import running_lab
from lab.runtime.software import SoftwareUnsupported

if TYPE_CHECKING:
    from lab.cli.common import Commands


def add_parsers(commands: Commands) -> None:
    """Register `run` and `verify`."""
    sub = add_command(
        commands,
        "run",
        cmd_run,
        "Start a scenario's lab, send as the customer, show what happened.",
    )
    sub.add_argument("scenario", metavar="SCENARIO", help="an id from `smtplab list` or a file")
    add_backend_option(sub)
    add_mta_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--fix", action="store_true", help="send with the scenario's fix applied")

    sub = add_command(
        commands, "verify", cmd_verify, "Run scenarios and check their `expect` and `fix`."
    )
    sub.add_argument("scenarios", nargs="*", metavar="SCENARIO|PATH")
    add_backend_option(sub)
    add_mta_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--results", type=Path, help="also write the results as JSON to this file")
    sub.add_argument(
        "--junit",
        type=Path,
        metavar="FILE",
        help="also write JUnit XML to FILE: one test case per scenario, for CI",
    )


def cmd_run(args: argparse.Namespace) -> int:
    """`smtplab run SCENARIO`."""
    from lab.runs import run_once

    scenario = load_scenario(args.scenario, args.mta)
    backend = pick_backend(args.backend)
    settings_ = scenario.client[1].settings
    if args.fix:
        if scenario.expect.fix is None:
            raise UsageError(f"scenario {scenario.id!r} has no fix")
        settings_ = scenario.expect.fix.apply(settings_)

    async def work() -> Any:
        with progress(f"starting {scenario.id} on the {backend.name} backend", quiet=args.json):
            async with running_lab(scenario, backend) as lab:
                return await run_once(lab, settings_)

    report = run_async(work)
    if args.json:
        out.print_json(json.dumps(report.to_json()))
    else:
        out.print(render.run_report(scenario, report), soft_wrap=True)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """`smtplab verify [SCENARIO|PATH...]`: non-zero when anything differs."""
    from lab.verify import verify

    scenarios = [load_scenario(str(path), args.mta) for path in scenario_paths(args.scenarios)]
    backend = pick_backend(args.backend)

    async def work() -> Any:
        results = []
        for index, scenario in enumerate(scenarios, 1):
            label = f"[{index}/{len(scenarios)}] {scenario.id} on {backend.name}"
            try:
                topology = backend.plan(scenario)
            except SoftwareUnsupported as refused:
                # `--mta postfix` over the catalog: what Postfix cannot play is skipped, said so.
                err.print(f"{scenario.id}: skipped: {refused}", markup=False)
                continue
            with progress(label, quiet=args.json):
                async with running_lab(topology.scenario, backend) as lab:
                    results.append(await verify(lab, backend=backend))
        return results

    results = run_async(work)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps([r.to_json() for r in results], indent=2))
    if args.junit:
        from lab.junit import write_junit

        write_junit(args.junit, results, backend.name)
    if args.json:
        out.print_json(json.dumps([r.to_json() for r in results]))
    else:
        out.print(render.verification_table(results))
        for result in results:
            for mismatch in result.mismatches:
                err.print(f"{result.scenario}: {mismatch}", markup=False)
    failed = sum(not r.passed for r in results)
    if not args.json:
        out.print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0
