"""`smtplab`: the command-line front end. Parses arguments, calls the lab, prints.

No lab logic lives here. Every user mistake ends as one message on stderr
and an exit code (2 for bad input), never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from lab import __version__, render
from lab.catalog import find_scenario, load, load_catalog, scenario_files
from lab.config import settings
from lab.errors import LabError, NoSuchLab, ScenarioError, UsageError
from lab.runtime import BACKENDS, get_backend
from lab.runtime.base import running_lab
from lab.scenario.loader import load_scenario

if TYPE_CHECKING:
    from lab.runtime.base import Backend
    from lab.runtime.docker import DockerBackend
    from lab.scenario.model import Scenario

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
            help="where nodes run (default: $SMTPLAB_BACKEND, else docker when an engine "
            "answers and the node image is built or can be, else local)",
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

    sub = command(
        "up",
        cmd_up,
        "Start a lab and print its endpoints. A docker lab keeps running after the command "
        "exits (`smtplab down LAB`); a local lab runs until Ctrl-C.",
    )
    sub.add_argument("scenario", metavar="SCENARIO")
    backend_option(sub)

    sub = command("down", cmd_down, "Stop a lab started with `smtplab up`.")
    sub.add_argument("lab", nargs="?", metavar="LAB", help="a lab id from `smtplab labs`")
    sub.add_argument(
        "--all",
        action="store_true",
        help="every lab started with `smtplab up` and every leftover of a dead run "
        "(labs a running process owns are left to it)",
    )

    sub = command("logs", cmd_logs, "Show what a node of a running lab logged.")
    sub.add_argument("lab", metavar="LAB")
    sub.add_argument("node", metavar="NODE")
    sub.add_argument("--tail", type=int, default=None, help="only the last N lines of each log")

    sub = command("labs", cmd_labs, "List running labs of both backends.")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = command(
        "reap", cmd_reap, "Remove docker labs whose owning process is gone (crashed runs)."
    )

    sub = command("image", _image_help, "Manage the docker node image.")
    image_commands = sub.add_subparsers(title="image commands", metavar="COMMAND")
    build = image_commands.add_parser(
        "build",
        help="Build the node image (found in seconds when the sources are unchanged).",
        description="Build the node image: offline from a debootstrap root filesystem "
        "(about 80 s the first time) or online from python:3.11-slim; chosen by whether a "
        "registry answers, unless a flag says.",
    )
    build.set_defaults(handler=cmd_image_build)
    where = build.add_mutually_exclusive_group()
    where.add_argument("--offline", action="store_true", help="debootstrap base, no registry")
    where.add_argument("--online", action="store_true", help="python:3.11-slim from a registry")
    build.add_argument("--force", action="store_true", help="build even if the image exists")

    sub = command("diagnose", cmd_diagnose, DIAGNOSE_HELP)
    _diagnose_parser(sub)
    backend_option(sub)

    sub = command("catalog", cmd_catalog, "List the faults the diagnosis engine can name.")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = command("tui", cmd_tui, "Open the training TUI: cases, diagnosis stepper, fixes.")
    backend_option(sub)
    sub.add_argument("--scenario", metavar="ID", help="open this case's briefing directly")
    sub.add_argument("--training", action="store_true", help="pick a cause before the verdict")
    sub.add_argument("--serve", action="store_true", help="serve it in a browser (textual-serve)")
    sub.add_argument("--host", default="localhost", help="with --serve: address to listen on")
    sub.add_argument("--port", type=int, default=8000, help="with --serve: port (default 8000)")
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
    backend = _backend(args.backend)
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
    backend = _backend(args.backend)

    async def work() -> Any:
        results = []
        for index, scenario in enumerate(scenarios, 1):
            label = f"[{index}/{len(scenarios)}] {scenario.id} on {backend.name}"
            with _progress(label, quiet=args.json):
                async with running_lab(scenario, backend) as lab:
                    results.append(await verify(lab, backend=backend))
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
    """`smtplab up SCENARIO`: docker labs stay up after the command; local ones until Ctrl-C."""
    scenario = load(args.scenario)
    backend = _backend(args.backend)
    from lab.runtime.docker import DockerBackend

    if isinstance(backend, DockerBackend):
        return _up_docker(scenario, backend)

    async def work() -> None:
        with _progress(f"starting {scenario.id} on the {backend.name} backend"):
            lab = await backend.up(backend.plan(scenario))
        state = _labs_dir() / f"{lab.id}.json"
        try:
            endpoints = await lab.publish_endpoints()
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


def _up_docker(scenario: Scenario, backend: DockerBackend) -> int:
    """A detached docker lab: its containers outlive this command; found again by label."""
    backend.detached = True

    async def work() -> Any:
        with _progress(f"starting {scenario.id} on the docker backend"):
            lab = await backend.up(backend.plan(scenario))
            try:
                endpoints = await lab.publish_endpoints()
            except BaseException:
                await lab.down()
                raise
        return lab, endpoints

    lab, endpoints = _run(work)
    out.print(f"Lab [bold]{lab.id}[/] is up on docker ({scenario.title}); it keeps running.")
    out.print(render.endpoints_table(endpoints))
    out.print(
        f"Logs: `smtplab logs {lab.id} NODE`; labs: `smtplab labs`; "
        f"stop it with `smtplab down {lab.id}`."
    )
    return 0


def _running_labs() -> dict[str, dict[str, Any]]:
    labs = {}
    for path in sorted(_labs_dir().glob("*.json")):
        try:
            labs[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return labs


def _engine_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """An engine that fails mid-command (restarted, out of space) is one line, not a
    traceback."""

    @functools.wraps(handler)
    def guarded(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except LabError:
            raise
        except Exception as error:
            if type(error).__module__.split(".")[0] not in ("docker", "requests", "urllib3"):
                raise
            from lab.errors import BackendUnavailable

            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise BackendUnavailable(
                f"the Docker engine failed: {type(error).__name__}: {first}"
            ) from error

    return guarded


def _docker_labs(*, needed: bool = False) -> tuple[Any, list[Any]]:
    """(docker client, labs on it); (None, []) when no engine answers, unless `needed`."""
    from lab.runtime.docker import DockerBackend, describe_labs

    backend = DockerBackend()
    reason = backend.available()
    if reason is not None:
        if needed:
            from lab.errors import BackendUnavailable

            raise BackendUnavailable(reason)
        return None, []
    return backend.client, describe_labs(backend.client)


def _no_such_lab(lab_id: str, local: dict[str, Any], docker: list[Any]) -> NoSuchLab:
    running = [*local, *(info.id for info in docker)]
    return NoSuchLab(f"no running lab {lab_id!r}; running: {', '.join(running) or 'none'}")


@_engine_errors
def cmd_down(args: argparse.Namespace) -> int:
    """`smtplab down LAB|--all`: local labs through their `up` process, docker ones by label."""
    from lab.runtime.docker import remove_lab

    if not args.all and not args.lab:
        raise UsageError("name a lab (see `smtplab labs`) or use --all")
    labs = _running_labs()
    client, docker = _docker_labs()
    if args.all:
        chosen = list(labs)
        docker_chosen = []
        for info in docker:
            if info.detached or info.owner_alive is False:
                docker_chosen.append(info.id)
            else:
                out.print(f"leaving {info.id}: its owner (pid {info.owner}) still runs")
    elif args.lab in labs:
        chosen, docker_chosen = [args.lab], []
    elif any(info.id == args.lab for info in docker):
        chosen, docker_chosen = [], [args.lab]
    else:
        raise _no_such_lab(args.lab, labs, docker)
    for lab_id in chosen:
        pid = int(labs[lab_id]["pid"])
        if _is_our_process(pid):
            os.kill(pid, signal.SIGTERM)
            out.print(f"stopping {lab_id} (pid {pid})")
        else:
            (_labs_dir() / f"{lab_id}.json").unlink(missing_ok=True)
            out.print(f"{lab_id} was no longer running; record removed")
    for lab_id in docker_chosen:
        remove_lab(client, lab_id)
        out.print(f"removed {lab_id} (docker)")
    if args.all and not chosen and not docker_chosen:
        out.print("no labs to stop")
    return 0


def _is_our_process(pid: int) -> bool:
    """True only for a live `smtplab up` process: we never signal anything else."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"smtplab" in part or b"lab.cli" in part for part in cmdline)


@_engine_errors
def cmd_logs(args: argparse.Namespace) -> int:
    """`smtplab logs LAB NODE`: the node's events; for docker also its container's output."""
    from lab.nodes.events import read_events

    labs = _running_labs()
    if args.lab in labs:
        directory = Path(labs[args.lab]["data"]) / args.node
        if not directory.is_dir():
            raise UsageError(f"lab {args.lab} has no node {args.node!r}")
        _print_events(read_events(directory), args.tail)
        return 0
    client, docker = _docker_labs()
    info = next((info for info in docker if info.id == args.lab), None)
    if info is None:
        raise _no_such_lab(args.lab, labs, docker)
    if args.node not in info.nodes:
        nodes = ", ".join(sorted(name for name in info.nodes if not name.startswith("_")))
        raise UsageError(f"lab {args.lab} has no node {args.node!r}; its nodes: {nodes}")
    from lab.runtime.docker import container_logs

    events = read_events(info.host_dir / args.node) if info.host_dir is not None else []
    out.print(f"--- {args.node}: events ({len(events)}) ---", markup=False)
    _print_events(events, args.tail)
    out.print(f"--- {args.node}: container output ---", markup=False)
    tail = "all" if args.tail is None else args.tail
    output = container_logs(client, args.lab, args.node, tail).rstrip()
    out.print(output, markup=False, highlight=False, soft_wrap=True)
    return 0


def _print_events(events: list[dict[str, Any]], tail: int | None) -> None:
    for event in events if tail is None else events[-tail:]:
        out.print(json.dumps(event), markup=False, highlight=False, soft_wrap=True)


@_engine_errors
def cmd_labs(args: argparse.Namespace) -> int:
    """`smtplab labs`: local labs from their records, docker labs by label."""
    import time

    rows: list[dict[str, Any]] = []
    for lab_id, record in _running_labs().items():
        pid = int(record.get("pid", 0))
        rows.append(
            {
                "id": lab_id,
                "backend": "local",
                "scenario": record.get("scenario"),
                "nodes": None,
                "owner": f"smtplab up (pid {pid})" if _is_our_process(pid) else "gone",
            }
        )
    _, docker = _docker_labs()
    for info in docker:
        running = sum(state == "running" for state in info.nodes.values())
        if info.detached:
            owner = "detached (smtplab up)"
        elif info.owner_alive is False:
            owner = "gone (smtplab reap removes it)"
        else:
            owner = f"pid {info.owner.partition(':')[0] if info.owner else '?'}"
        rows.append(
            {
                "id": info.id,
                "backend": "docker",
                "scenario": info.scenario,
                "nodes": f"{running}/{len(info.nodes)} running",
                "owner": owner,
                "age": round(time.time() - info.created) if info.created else None,
            }
        )
    if args.json:
        out.print_json(json.dumps(rows))
        return 0
    if not rows:
        out.print("no running labs")
        return 0
    from rich.table import Table

    table = Table(title="Running labs")
    for column in ("id", "backend", "scenario", "nodes", "owner"):
        table.add_column(column, no_wrap=column == "id")
    for row in rows:
        table.add_row(
            *(str(row[key] or "") for key in ("id", "backend", "scenario", "nodes", "owner"))
        )
    out.print(table)
    return 0


@_engine_errors
def cmd_reap(args: argparse.Namespace) -> int:
    """`smtplab reap`: docker labs whose owner process is gone; stale local records."""
    from lab.runtime.docker import reap

    del args
    for lab_id, record in _running_labs().items():
        if not _is_our_process(int(record.get("pid", 0))):
            (_labs_dir() / f"{lab_id}.json").unlink(missing_ok=True)
            out.print(f"removed the record of {lab_id} (local; its process is gone)")
    client, _ = _docker_labs(needed=True)
    removed = reap(client)
    for lab_id in removed:
        out.print(f"removed {lab_id} (docker; its owner is gone)")
    if not removed:
        out.print("no docker leftovers")
    return 0


def _image_help(args: argparse.Namespace) -> int:
    del args
    raise UsageError("say what to do with the image: `smtplab image build [--offline|--online]`")


@_engine_errors
def cmd_image_build(args: argparse.Namespace) -> int:
    """`smtplab image build [--offline|--online] [--force]`."""
    import time

    from lab.runtime.docker import DockerBackend
    from lab.runtime.image import build_node_image

    backend = DockerBackend()
    reason = backend.available()
    if reason is not None:
        from lab.errors import BackendUnavailable

        raise BackendUnavailable(reason)
    offline = True if args.offline else False if args.online else None
    started = time.monotonic()
    with _progress("building the node image") as say:
        tag = build_node_image(offline, say, client=backend.client, force=args.force)
    out.print(f"{tag} ready in {time.monotonic() - started:.1f} s", markup=False)
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    """`smtplab tui [--backend B] [--scenario ID] [--training] [--serve [--port N]]`."""
    try:
        import tui.app  # imported here: the rest of the CLI runs without Textual
    except ImportError as error:
        raise UsageError(f"the TUI needs Textual ({error}): pip install smtp-lab") from error

    if args.scenario:
        load(args.scenario)  # an unknown id is one line on stderr, before any screen opens
    if args.serve:
        passed = ["--backend", args.backend] if args.backend else []
        passed += ["--scenario", args.scenario] if args.scenario else []
        passed += ["--training"] if args.training else []
        return tui.app.serve(passed, host=args.host, port=args.port)
    return tui.app.run(args.scenario, args.backend, args.training)


# --- diagnose / catalog --------------------------------------------------------------------------

DIAGNOSE_HELP = (
    "Walk the SMTP path step by step (DNS, ports, banner, EHLO, STARTTLS, AUTH, MAIL, RCPT, "
    "DATA, delivery), name the fault, and prove the fix by re-sending."
)
SECURITY_CHOICES = ("none", "starttls", "tls")
MECHANISM_CHOICES = ("auto", "PLAIN", "LOGIN", "CRAM-MD5")
# Options that describe a server: only meaningful with --server.
_SERVER_OPTIONS = (
    "port",
    "security",
    "user",
    "password",
    "mechanism",
    "sender",
    "to",
    "timeout",
    "ca_file",
    "insecure",
    "dns",
    "helo",
    "size",
)


def _diagnose_parser(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "scenario", nargs="?", metavar="SCENARIO|PATH", help="an id from `smtplab list` or a file"
    )
    output = sub.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--markdown", action="store_true", help="a report to paste in a ticket")
    sub.add_argument("--no-fix", action="store_true", help="do not re-send with the remedy")
    server = sub.add_argument_group("any server (instead of a scenario)")
    server.add_argument("--server", metavar="HOST", help="the outgoing server (name or address)")
    server.add_argument("--port", type=int, default=None, help="port (default 587)")
    server.add_argument(
        "--security", choices=SECURITY_CHOICES, default=None, help="default starttls"
    )
    server.add_argument("--user", metavar="USER", help="login name")
    server.add_argument("--password", metavar="PASSWORD", help="login password")
    server.add_argument("--mechanism", choices=MECHANISM_CHOICES, default=None)
    server.add_argument("--from", dest="sender", metavar="ADDRESS", help="envelope sender")
    server.add_argument(
        "--to", action="append", metavar="ADDRESS", help="recipient (repeat, or comma-separated)"
    )
    server.add_argument("--timeout", type=float, default=None, help="seconds (default 10)")
    server.add_argument("--ca-file", type=Path, default=None, help="trust this CA (PEM)")
    server.add_argument("--insecure", action="store_true", help="do not verify certificates")
    server.add_argument("--dns", metavar="HOST[:PORT]", help="ask this DNS server only")
    server.add_argument("--helo", metavar="NAME", help="the name to greet with")
    server.add_argument("--size", metavar="SIZE", help="test message size (e.g. 20KB)")


def _server_settings(args: argparse.Namespace) -> tuple[Any, Any]:
    """MailSettings and a ServerTarget from `--server …`; UsageError for bad input."""
    from pydantic import ValidationError

    from lab.diagnosis.target import ServerTarget, nameserver_resolver
    from lab.scenario.model import MailSettings

    if not args.sender or not args.to:
        raise UsageError("--server needs --from ADDRESS and --to ADDRESS")
    if (args.user is None) != (args.password is None):
        raise UsageError("give --user and --password together")
    if args.mechanism and args.user is None:
        raise UsageError("--mechanism needs --user and --password")
    if args.ca_file is not None and args.insecure:
        raise UsageError("--ca-file and --insecure exclude each other")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise UsageError(f"--ca-file {args.ca_file}: no such file")
    timeout = 10.0 if args.timeout is None else args.timeout
    if timeout <= 0:
        raise UsageError("--timeout must be more than 0 seconds")
    recipients = [a.strip() for item in args.to for a in item.split(",") if a.strip()]
    data: dict[str, Any] = {
        "server": args.server,
        "port": 587 if args.port is None else args.port,
        "security": args.security or "starttls",
        "from": args.sender,
        "to": recipients,
        "timeout": timeout,
        "verify_tls": not args.insecure,
    }
    if args.user is not None:
        data["auth"] = {
            "user": args.user,
            "password": args.password,
            "mechanism": args.mechanism or "auto",
        }
    if args.helo:
        data["helo"] = args.helo
    if args.size:
        data["size"] = args.size
    try:
        settings_ = MailSettings.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "settings"
        where = {"from": "--from", "to": "--to", "auth.user": "--user"}.get(where, f"--{where}")
        raise UsageError(f"{where}: {first['msg']}") from None
    resolver = None
    if args.dns:
        host, _, port = args.dns.rpartition(":") if ":" in args.dns else (args.dns, "", "53")
        if not port.isdigit():
            raise UsageError(f"--dns {args.dns}: expected HOST or HOST:PORT")
        resolver = nameserver_resolver(host or args.dns, int(port), timeout=min(timeout, 5.0))
    target = ServerTarget(
        resolver=resolver,
        ca_file=args.ca_file,
        helo=args.helo,
        label=f"server {args.server}",
    )
    return settings_, target


def cmd_diagnose(args: argparse.Namespace) -> int:
    """`smtplab diagnose SCENARIO|PATH` or `smtplab diagnose --server HOST …`."""
    from lab.diagnosis import report

    given = [f"--{name.replace('_', '-')}" for name in _SERVER_OPTIONS if _given(args, name)]
    if args.scenario and args.server:
        raise UsageError("name a scenario or give --server HOST, not both")
    if not args.scenario and not args.server:
        raise UsageError("name a scenario (see `smtplab list`) or give --server HOST")
    if args.scenario and given:
        raise UsageError(f"{', '.join(given)}: only with --server (a scenario has its settings)")
    if args.server and args.backend:
        raise UsageError("--backend is for scenarios; --server talks to the server directly")
    quiet = args.json or args.markdown

    async def work() -> Any:
        if args.server:
            settings_, target = _server_settings(args)
            return await _diagnose_streaming(target, settings_, args, quiet=quiet)
        scenario = load(args.scenario)
        backend = _backend(args.backend)
        from lab.diagnosis.target import LabTarget

        with _progress(f"starting {scenario.id} on the {backend.name} backend", quiet=quiet):
            lab = await backend.up(backend.plan(scenario))
        try:
            return await _diagnose_streaming(
                LabTarget(lab), scenario.client[1].settings, args, quiet=quiet
            )
        finally:
            await lab.down()

    steps, diagnosis, target_name, settings_ = _run(work)
    if args.json:
        data = report.to_json_report(steps, diagnosis, target=target_name, settings=settings_)
        out.print_json(json.dumps(data))
    elif args.markdown:
        sys.stdout.write(
            report.to_markdown(steps, diagnosis, target=target_name, settings=settings_) + "\n"
        )
    return report.exit_code(diagnosis)


def _given(args: argparse.Namespace, name: str) -> bool:
    value = getattr(args, name, None)
    return value not in (None, False)


async def _diagnose_streaming(
    target: Any, settings_: Any, args: argparse.Namespace, *, quiet: bool
) -> tuple[list[Any], Any, str, Any]:
    """Run the engine; print each step as it comes unless the output is JSON or Markdown."""
    from lab.diagnosis import report
    from lab.diagnosis.engine import diagnose
    from lab.diagnosis.events import Diagnosis

    steps: list[Any] = []
    if not quiet:
        out.print(
            f"Diagnosing {target.name}: {report.settings_line(settings_)}",
            markup=False,
            soft_wrap=True,
        )
    events = diagnose(target, settings_, verify_fix=not args.no_fix)
    async with contextlib.aclosing(events):
        async for event in events:
            if isinstance(event, Diagnosis):
                if not quiet:
                    out.print()
                    out.print(report.diagnosis_renderable(event))
                return steps, event, target.name, settings_
            steps.append(event)
            if not quiet:
                out.print(report.step_renderable(event), soft_wrap=True)
    raise AssertionError("the engine ends with a Diagnosis")  # pragma: no cover


def cmd_catalog(args: argparse.Namespace) -> int:
    """`smtplab catalog [--json]`."""
    from lab.diagnosis.catalog import load_catalog

    catalog = load_catalog()
    if args.json:
        out.print_json(json.dumps([entry.model_dump(mode="json") for entry in catalog.entries]))
        return 0
    from rich.table import Table

    table = Table(title=f"Known faults ({len(catalog.entries)})")
    table.add_column("id", no_wrap=True)
    table.add_column("title")
    table.add_column("severity", no_wrap=True)
    table.add_column("references")
    for entry in catalog.entries:
        table.add_row(entry.id, entry.title, entry.severity, "; ".join(entry.references))
    out.print(table)
    return 0


# --- helpers ------------------------------------------------------------------------------------


def _run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(work())


@contextmanager
def _progress(message: str, *, quiet: bool = False) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while long work runs; yields a function that prints a progress
    line above it (plain lines when stderr is not a terminal; nothing when `quiet`)."""

    def say(line: str) -> None:
        if not quiet:
            err.print(f"  {line}", style="dim", markup=False, highlight=False)

    if quiet or not err.is_terminal:
        yield say
        return
    with err.status(message):
        yield say


def _backend(name: str | None) -> Backend:
    """The backend to use (`lab.runtime.get_backend`); for docker, the node image is found
    or, on first use, built here with a progress display before any lab starts."""
    from lab.runtime import default_backend
    from lab.runtime.docker import DockerBackend

    chosen = name or default_backend()[0]
    backend = get_backend(chosen)
    if isinstance(backend, DockerBackend):
        from lab.runtime.image import present_node_image

        tag = present_node_image(backend.client)
        if tag is None:
            err.print(
                "smtplab: first use of the docker backend with these sources: building the "
                "node image (about 80 s without a registry, seconds once its base is cached; "
                "`--backend local` needs none)",
                markup=False,
            )
            with _progress("building the node image") as say:
                backend.progress = say
                tag = backend.ensure_image()
        backend.image = tag
    return backend


__all__ = ["find_scenario", "main"]

if __name__ == "__main__":
    sys.exit(main())
