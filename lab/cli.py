"""`smtplab`: the command-line front end. Parses arguments, calls the lab, prints.

No lab logic lives here. Every user mistake ends as one message on stderr
and an exit code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console

from lab import __version__, render
from lab.catalog import find_scenario, load, load_catalog, scenario_files
from lab.config import settings
from lab.errors import LabError, NoSuchLab, ScenarioError, UsageError
from lab.runtime import BACKENDS, get_backend
from lab.runtime.base import running_lab
from lab.scenario.loader import load_scenario

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `smtplab` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ScenarioError as error:
        for problem in error.problems:
            err.print(str(problem), markup=False)
        return error.exit_code
    except LabError as error:
        err.print(f"smtplab: {error}", markup=False)
        return error.exit_code
    except KeyboardInterrupt:
        err.print("smtplab: interrupted")
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smtplab",
        description="Reproduce, diagnose and test SMTP failures in a lab of real servers.",
    )
    parser.add_argument("--version", action="version", version=f"smtplab {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    def backend_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--backend",
            choices=sorted(BACKENDS),
            default=None,
            help="where nodes run (default: $SMTPLAB_BACKEND, else local)",
        )

    sub = command("list", cmd_list, "List the scenarios in the catalog.")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = command("validate", cmd_validate, "Check scenario files; all of the catalog by default.")
    sub.add_argument("paths", nargs="*", metavar="PATH")

    sub = command(
        "run", cmd_run, "Start a scenario's lab, send as the customer, show what happened."
    )
    sub.add_argument("scenario", metavar="SCENARIO", help="an id from `smtplab list` or a file")
    backend_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--fix", action="store_true", help="send with the scenario's fix applied")

    sub = command("verify", cmd_verify, "Run scenarios and check their `expect` and `fix`.")
    sub.add_argument("scenarios", nargs="*", metavar="SCENARIO|PATH")
    backend_option(sub)
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--results", type=Path, help="also write the results as JSON to this file")

    sub = command("up", cmd_up, "Start a lab and keep it running; prints its endpoints.")
    sub.add_argument("scenario", metavar="SCENARIO")
    backend_option(sub)

    sub = command("down", cmd_down, "Stop a lab started with `smtplab up`.")
    sub.add_argument("lab", nargs="?", metavar="LAB", help="a lab id from `smtplab up`")
    sub.add_argument("--all", action="store_true", help="every lab started on this machine")

    sub = command("logs", cmd_logs, "Show what a node of a running lab logged.")
    sub.add_argument("lab", metavar="LAB")
    sub.add_argument("node", metavar="NODE")
    return parser


# --- list / validate -----------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """`smtplab list`."""
    scenarios, errors = load_catalog()
    if args.json:
        rows = [
            {
                "id": s.id,
                "title": s.title,
                "level": str(s.level),
                "tags": s.tags,
                "outcome": str(s.expect.outcome),
            }
            for s in scenarios
        ]
        out.print_json(json.dumps(rows))
    else:
        from rich.table import Table

        table = Table(title=f"Scenarios in {settings.scenarios_dir}")
        table.add_column("id", no_wrap=True)
        table.add_column("title")
        table.add_column("level", no_wrap=True)
        table.add_column("expected", no_wrap=True)
        table.add_column("tags")
        for s in scenarios:
            table.add_row(s.id, s.title, str(s.level), str(s.expect.outcome), ", ".join(s.tags))
        out.print(table)
    for error in errors:
        err.print(str(error), markup=False)
    return 2 if errors else 0


def cmd_validate(args: argparse.Namespace) -> int:
    """`smtplab validate [PATH...]`."""
    paths = [Path(p) for p in args.paths] or scenario_files()
    if not paths:
        raise UsageError(f"no scenario files in {settings.scenarios_dir}")
    failed = 0
    for path in paths:
        try:
            load_scenario(path)
        except ScenarioError as error:
            failed += 1
            for problem in error.problems:
                err.print(str(problem), markup=False)
        else:
            out.print(f"ok  {path}", markup=False)
    return 2 if failed else 0


# --- run / verify -------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    """`smtplab run SCENARIO`."""
    from lab.runs import run_once

    scenario = load(args.scenario)
    backend = get_backend(args.backend)
    settings_ = scenario.client[1].settings
    if args.fix:
        if scenario.expect.fix is None:
            raise UsageError(f"scenario {scenario.id!r} has no fix")
        settings_ = scenario.expect.fix.apply(settings_)

    async def work() -> Any:
        with _progress(f"starting {scenario.id} on the {backend.name} backend", quiet=args.json):
            async with running_lab(scenario, backend) as lab:
                return await run_once(lab, settings_)

    report = _run(work)
    if args.json:
        out.print_json(json.dumps(report.to_json()))
    else:
        out.print(render.run_report(scenario, report), soft_wrap=True)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """`smtplab verify [SCENARIO|PATH...]`: non-zero when anything differs."""
    from lab.verify import verify

    references = args.scenarios or [str(p) for p in scenario_files()]
    scenarios = [load(reference) for reference in references]
    backend = get_backend(args.backend)

    async def work() -> Any:
        results = []
        for index, scenario in enumerate(scenarios, 1):
            label = f"[{index}/{len(scenarios)}] {scenario.id} on {backend.name}"
            with _progress(label, quiet=args.json):
                async with running_lab(scenario, backend) as lab:
                    results.append(await verify(lab))
        return results

    results = _run(work)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.write_text(json.dumps([r.to_json() for r in results], indent=2))
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


# --- up / down / logs ---------------------------------------------------------------------------


def _labs_dir() -> Path:
    return settings.state_dir / "labs"


def cmd_up(args: argparse.Namespace) -> int:
    """`smtplab up SCENARIO`: the lab runs until Ctrl-C or `smtplab down`."""
    scenario = load(args.scenario)
    backend = get_backend(args.backend)

    async def work() -> None:
        with _progress(f"starting {scenario.id} on the {backend.name} backend"):
            lab = await backend.up(backend.plan(scenario))
        state = _labs_dir() / f"{lab.id}.json"
        try:
            endpoints = await lab.publish_endpoints()  # type: ignore[attr-defined]
            out.print(f"Lab [bold]{lab.id}[/] is up ({scenario.title}).")
            out.print(render.endpoints_table(endpoints))
            out.print(f"Stop it with Ctrl-C or `smtplab down {lab.id}`.")
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(
                json.dumps(
                    {
                        "id": lab.id,
                        "backend": lab.backend,
                        "scenario": scenario.id,
                        "pid": os.getpid(),
                        "data": str(lab.data_dir("")),
                    }
                )
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            state.unlink(missing_ok=True)
            await lab.down()
            out.print(f"Lab {lab.id} is down.")

    _run(work)
    return 0


def _running_labs() -> dict[str, dict[str, Any]]:
    labs = {}
    for path in sorted(_labs_dir().glob("*.json")):
        try:
            labs[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return labs


def cmd_down(args: argparse.Namespace) -> int:
    """`smtplab down LAB|--all`."""
    labs = _running_labs()
    if args.all:
        chosen = list(labs)
    elif args.lab:
        if args.lab not in labs:
            raise NoSuchLab(f"no running lab {args.lab!r}; running: {', '.join(labs) or 'none'}")
        chosen = [args.lab]
    else:
        raise UsageError("name a lab (see the id printed by `smtplab up`) or use --all")
    for lab_id in chosen:
        pid = int(labs[lab_id]["pid"])
        if _is_our_process(pid):
            os.kill(pid, signal.SIGTERM)
            out.print(f"stopping {lab_id} (pid {pid})")
        else:
            (_labs_dir() / f"{lab_id}.json").unlink(missing_ok=True)
            out.print(f"{lab_id} was no longer running; record removed")
    return 0


def _is_our_process(pid: int) -> bool:
    """True only for a live `smtplab up` process: we never signal anything else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"smtplab" in part or b"lab.cli" in part for part in cmdline)


def cmd_logs(args: argparse.Namespace) -> int:
    """`smtplab logs LAB NODE`."""
    from lab.nodes.events import read_events

    labs = _running_labs()
    if args.lab not in labs:
        raise NoSuchLab(f"no running lab {args.lab!r}; running: {', '.join(labs) or 'none'}")
    directory = Path(labs[args.lab]["data"]) / args.node
    if not directory.is_dir():
        raise UsageError(f"lab {args.lab} has no node {args.node!r}")
    for event in read_events(directory):
        out.print(json.dumps(event), markup=False, highlight=False)
    return 0


# --- helpers ------------------------------------------------------------------------------------


def _run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


@contextmanager
def _progress(message: str, *, quiet: bool = False) -> Iterator[None]:
    """A spinner on stderr while long work runs (nothing when output is JSON or not a tty)."""
    if quiet or not err.is_terminal:
        yield
        return
    with err.status(message):
        yield


__all__ = ["find_scenario", "main"]

if __name__ == "__main__":
    sys.exit(main())
