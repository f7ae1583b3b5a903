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
    from lab.runtime.base import Backend
    from lab.scenario.model import MailSettings, Scenario


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
    sub.add_argument(
        "--repair",
        action="store_true",
        help="run with the servers repaired as the scenario's `expect.repair` says",
    )

    sub = add_command(
        commands, "verify", cmd_verify, "Run scenarios and check their `expect` and `fix`."
    )
    sub.add_argument("scenarios", nargs="*", metavar="SCENARIO|PATH")
    add_backend_option(sub)
    add_mta_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--results", type=Path, help="also write the results as JSON to this file")
    sub.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="verify N scenarios at once, each in its own lab (default 1)",
    )
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
    changes: dict[str, tuple[str, str]] = {}
    if args.fix:
        if scenario.expect.fix is None:
            raise UsageError(f"scenario {scenario.id!r} has no fix")
        fixed = scenario.expect.fix.apply(settings_)
        changes = setting_changes(settings_, fixed)
        settings_ = fixed
    repairs = scenario.expect.repair
    if args.repair:
        if not repairs:
            raise UsageError(f"scenario {scenario.id!r} has no repair (expect.repair)")
        from lab.scenario.repair import repaired

        scenario = repaired(scenario)

    async def work() -> Any:
        with progress(f"starting {scenario.id} on the {backend.name} backend", quiet=args.json):
            async with running_lab(scenario, backend) as lab:
                return await run_once(lab, settings_)

    report = run_async(work)
    if args.json:
        extra: dict[str, Any] = {}
        if args.fix:
            extra["fix_changes"] = {key: list(pair) for key, pair in changes.items()}
        if args.repair:
            extra["repaired"] = sorted(repairs)
        out.print_json(json.dumps({**report.to_json(), **extra}))
    else:
        if args.fix:
            said = ", ".join(f"{key} {old} → {new}" for key, (old, new) in changes.items())
            out.print(f"Fix applied to the mail program: {said or 'nothing changed'}", markup=False)
        if args.repair:
            out.print(f"Servers repaired: {', '.join(sorted(repairs))}", markup=False)
        out.print(render.run_report(scenario, report), soft_wrap=True)
    return 0


def setting_changes(before: MailSettings, after: MailSettings) -> dict[str, tuple[str, str]]:
    """Setting -> (old, new) for every mail-program setting the fix changed; no password."""

    def shown(settings: MailSettings) -> dict[str, str]:
        values = settings.model_dump(mode="json", by_alias=True)
        auth = values.pop("auth", None)
        values["auth"] = f"as {auth['user']}" if isinstance(auth, dict) else "none"
        return {
            key: ", ".join(map(str, v)) if isinstance(v, list) else str(v)
            for key, v in values.items()
        }

    old, new = shown(before), shown(after)
    return {key: (old.get(key, "-"), value) for key, value in new.items() if old.get(key) != value}


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


async def _verify_concurrently(
    scenarios: list[Scenario], backend: Backend, jobs: int, *, quiet: bool
) -> list[Any]:
    """Each scenario in its own lab, `jobs` labs at a time; results in the given order."""
    import asyncio

    from lab.verify import verify

    gate = asyncio.Semaphore(jobs)
    label = f"verifying {len(scenarios)} scenarios on {backend.name}, {jobs} at a time"
    with progress(label, quiet=quiet) as say:

        async def one(scenario: Scenario) -> Any:
            async with gate, running_lab(scenario, backend) as lab:
                result = await verify(lab, backend=backend)
            say(f"{scenario.id}: {'ok' if result.passed else 'FAILED'}")
            return result

        return list(await asyncio.gather(*(one(scenario) for scenario in scenarios)))


def cmd_verify(args: argparse.Namespace) -> int:
    """`smtplab verify [SCENARIO|PATH...]`: non-zero when anything differs."""
    from lab.verify import verify

    scenarios = [load_scenario(str(path), args.mta) for path in scenario_paths(args.scenarios)]
    backend = pick_backend(args.backend)

    playable = []
    for scenario in scenarios:
        try:
            playable.append(backend.plan(scenario).scenario)
        except SoftwareUnsupported as refused:
            # `--mta postfix` over the catalog: what Postfix cannot play is skipped, said so.
            err.print(f"{scenario.id}: skipped: {refused}", markup=False)

    async def work() -> Any:
        if args.jobs > 1:
            return await _verify_concurrently(playable, backend, args.jobs, quiet=args.json)
        results = []
        for index, scenario in enumerate(playable, 1):
            label = f"[{index}/{len(playable)}] {scenario.id} on {backend.name}"
            with progress(label, quiet=args.json):
                async with running_lab(scenario, backend) as lab:
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
