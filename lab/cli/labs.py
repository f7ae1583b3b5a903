"""`smtplab up`, `down`, `logs`, `labs` and `reap`: labs that outlive one command.

A local lab lives as long as its `smtplab up` process, which leaves a JSON record in the
state directory; a docker lab is detached and found again by label. `down` signals only
a live `smtplab up` process, never anything else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab import render
from lab.cli.common import (
    add_backend_option,
    add_command,
    add_mta_option,
    engine_errors,
    load_scenario,
    out,
    pick_backend,
    progress,
    run_async,
)
from lab.config import settings
from lab.errors import NoSuchLab, UsageError

if TYPE_CHECKING:
    from lab.cli.common import Commands
    from lab.runtime.docker import DockerBackend
    from lab.scenario.model import Scenario


def add_parsers(commands: Commands) -> None:
    """Register `up`, `down`, `logs`, `labs` and `reap`."""
    sub = add_command(
        commands,
        "up",
        cmd_up,
        "Start a lab and print its endpoints. A docker lab keeps running after the command "
        "exits (`smtplab down LAB`); a local lab runs until Ctrl-C.",
    )
    sub.add_argument("scenario", metavar="SCENARIO")
    add_backend_option(sub)
    add_mta_option(sub)

    sub = add_command(commands, "down", cmd_down, "Stop a lab started with `smtplab up`.")
    sub.add_argument("lab", nargs="?", metavar="LAB", help="a lab id from `smtplab labs`")
    sub.add_argument(
        "--all",
        action="store_true",
        help="every lab started with `smtplab up` and every leftover of a dead run "
        "(labs a running process owns are left to it)",
    )

    sub = add_command(commands, "logs", cmd_logs, "Show what a node of a running lab logged.")
    sub.add_argument("lab", metavar="LAB")
    sub.add_argument("node", metavar="NODE")
    sub.add_argument("--tail", type=int, default=None, help="only the last N lines of each log")

    sub = add_command(commands, "labs", cmd_labs, "List running labs of both backends.")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    add_command(
        commands,
        "reap",
        cmd_reap,
        "Remove docker labs whose owning process is gone (crashed runs).",
    )


def _labs_dir() -> Path:
    """Where each local `smtplab up` keeps the record of its lab."""
    return settings.state_dir / "labs"


def cmd_up(args: argparse.Namespace) -> int:
    """`smtplab up SCENARIO`: docker labs stay up after the command; local ones until Ctrl-C."""
    scenario = load_scenario(args.scenario, args.mta)
    backend = pick_backend(args.backend)
    from lab.runtime.docker import DockerBackend

    if isinstance(backend, DockerBackend):
        return _up_docker(scenario, backend)

    async def work() -> None:
        with progress(f"starting {scenario.id} on the {backend.name} backend"):
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

    run_async(work)
    return 0


def _up_docker(scenario: Scenario, backend: DockerBackend) -> int:
    """A detached docker lab: its containers outlive this command; found again by label."""
    backend.detached = True

    async def work() -> Any:
        with progress(f"starting {scenario.id} on the docker backend"):
            lab = await backend.up(backend.plan(scenario))
            try:
                endpoints = await lab.publish_endpoints()
            except BaseException:
                await lab.down()
                raise
        return lab, endpoints

    lab, endpoints = run_async(work)
    out.print(f"Lab [bold]{lab.id}[/] is up on docker ({scenario.title}); it keeps running.")
    out.print(render.endpoints_table(endpoints))
    out.print(
        f"Logs: `smtplab logs {lab.id} NODE`; labs: `smtplab labs`; "
        f"stop it with `smtplab down {lab.id}`."
    )
    return 0


def _running_labs() -> dict[str, dict[str, Any]]:
    """Local lab records by lab id (unreadable ones skipped)."""
    labs = {}
    for path in sorted(_labs_dir().glob("*.json")):
        try:
            labs[path.stem] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
    return labs


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


@engine_errors
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


@engine_errors
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


@engine_errors
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


@engine_errors
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
